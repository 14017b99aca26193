"""Weights between PyTorch state dicts (or safetensors files) and ``InputEmbedding`` params.

Three layouts of the two tables, token table ``(V, D)`` then position table ``(C, D)``:

* ``book``: ``tok_emb.weight``, ``pos_emb.weight``;
* ``hf``: ``wte.weight``, ``wpe.weight``;
* ``nanogpt``: ``transformer.wte.weight``, ``transformer.wpe.weight``.

``book`` is the book's ``GPTModel`` (and ``parity.torch_reference``), ``hf`` Hugging
Face's ``GPT2Model``, ``nanogpt`` nanoGPT's ``GPT``. A Hugging Face
``GPT2LMHeadModel`` names its tables ``transformer.wte.weight`` too: reading it as
either ``hf`` or ``nanogpt`` takes the same two tensors.

A model without a learned position table (``InputEmbedding(position="sinusoidal")``
or ``"none"``) has only the token table: it is exported alone, and read back alone
when ``model=`` is such a model.

Tables keep their dtype both ways (float32 round-trips bit for bit, bfloat16
too); nothing is cast. Torch is imported only by ``params_to_torch``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from flax_embed._io import atomic_path

__all__ = [
    "LAYOUTS",
    "EmbeddingKeys",
    "detect_layout",
    "load_params",
    "params_from_torch",
    "params_to_numpy",
    "params_to_torch",
    "save_params",
    "to_numpy",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EmbeddingKeys:
    """Where one layout keeps the two tables in a state dict.

    Attributes:
      layout: the layout's name, ``"book"``, ``"hf"`` or ``"nanogpt"``.
      tok_emb: the key of the token table, ``(vocab_size, features)``.
      pos_emb: the key of the position table, ``(context_length, features)``.
    """

    layout: str
    tok_emb: str
    pos_emb: str

    @property
    def names(self) -> tuple[str, str]:
        """``(tok_emb, pos_emb)``."""
        return self.tok_emb, self.pos_emb


LAYOUTS: dict[str, EmbeddingKeys] = {
    "book": EmbeddingKeys("book", "tok_emb.weight", "pos_emb.weight"),
    "hf": EmbeddingKeys("hf", "wte.weight", "wpe.weight"),
    "nanogpt": EmbeddingKeys("nanogpt", "transformer.wte.weight", "transformer.wpe.weight"),
}
"""The known layouts by name."""

_HF_PREFIXED = EmbeddingKeys("hf", "transformer.wte.weight", "transformer.wpe.weight")
_MODULES = ("tok_emb", "pos_emb")


def to_numpy(value: Any) -> np.ndarray:
    """A NumPy array of ``value`` (a torch tensor, JAX array or array-like), same dtype.

    torch's bfloat16, which ``Tensor.numpy()`` refuses, comes back as
    ``ml_dtypes.bfloat16`` with the same bits. Torch itself is never imported here.
    """
    if hasattr(value, "detach"):  # a torch tensor
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            import ml_dtypes
            import torch

            return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return tensor.numpy()
    return np.asarray(value)


def _layout_keys(layout: str) -> EmbeddingKeys:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known layouts: {sorted(LAYOUTS)}")
    return LAYOUTS[layout]


def detect_layout(state_dict: Mapping[str, Any], layout: str | None = None) -> EmbeddingKeys:
    """The keys of the two embedding tables in ``state_dict``.

    Args:
      state_dict: a torch state dict (or any mapping of names to arrays), a whole
        model's or just the two tables.
      layout: ``"book"``, ``"hf"`` or ``"nanogpt"``; None detects it from the keys.
        With ``"hf"`` the ``transformer.`` prefix (``GPT2LMHeadModel``) is accepted.

    Raises:
      TypeError: ``state_dict`` is not a mapping: pass ``model.state_dict()``.
      ValueError: an unknown layout, or a state dict holding neither table pair (the
        message names the keys it looked for and some of those it has).
    """
    return _find_keys(state_dict, layout, need_pos=True)


def _find_keys(state_dict: Mapping[str, Any], layout: str | None, *, need_pos: bool):
    """``detect_layout``; with ``need_pos=False`` the position table may be absent."""
    _check_state_dict(state_dict)
    if layout is not None:
        keys = _layout_keys(layout)
        if layout == "hf" and keys.tok_emb not in state_dict and _HF_PREFIXED.tok_emb in state_dict:
            keys = _HF_PREFIXED  # GPT2LMHeadModel: the same tables under "transformer."
        needed = keys.names if need_pos else (keys.tok_emb,)
        missing = [k for k in needed if k not in state_dict]
        if missing:
            hint = ""
            if missing == [keys.pos_emb]:
                hint = (
                    " (a model without a learned position table takes the token table alone: "
                    "pass model=InputEmbedding(..., position='sinusoidal' or 'none'))"
                )
            raise ValueError(
                f"state dict has no {missing[0]!r} (layout {layout!r} needs "
                f"{keys.tok_emb!r} and {keys.pos_emb!r}{hint}); {_some_keys(state_dict)}"
            )
        return keys
    found = [k for k in LAYOUTS.values() if k.tok_emb in state_dict or k.pos_emb in state_dict]
    if not found:
        wanted = ", ".join(f"{k.tok_emb!r} ({k.layout})" for k in LAYOUTS.values())
        raise ValueError(
            f"cannot detect the layout: state dict has none of {wanted}; {_some_keys(state_dict)}"
        )
    if len(found) > 1:
        names = [k.layout for k in found]
        raise ValueError(f"ambiguous layout: state dict holds tables of {names}; pass layout=")
    (keys,) = found
    if keys.layout == "nanogpt" and _looks_like_hf(state_dict):
        return _find_keys(state_dict, "hf", need_pos=need_pos)
    return _find_keys(state_dict, keys.layout, need_pos=need_pos)


def _check_state_dict(state_dict: Any) -> None:
    """TypeError unless ``state_dict`` is a mapping of names to tables."""
    if isinstance(state_dict, Mapping):
        return
    if callable(getattr(state_dict, "state_dict", None)):
        what = f"a {type(state_dict).__name__} (a module?)"
    elif hasattr(state_dict, "shape"):
        what = f"one {type(state_dict).__name__} of shape {tuple(state_dict.shape)}"
    else:
        what = "None" if state_dict is None else f"a {type(state_dict).__name__}"
    raise TypeError(
        f"state_dict must be a mapping of names to tables, got {what}: pass model.state_dict()"
    )


def _check_has_data(key: str, value: Any) -> None:
    """ValueError unless ``value`` is an array with dense data: a NumPy, JAX or strided torch one.

    Refused: Python lists and other non-arrays (NumPy would guess a dtype, float64
    for a list of floats), torch meta tensors (a shape without data), sparse and
    quantized tensors.
    """
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        raise ValueError(
            f"{key!r} is a {type(value).__name__}, not a tensor or array: pass "
            "model.state_dict() (torch tensors) or NumPy arrays of the tables"
        )
    if getattr(value, "is_meta", False) is True:
        raise ValueError(
            f"{key!r} is a meta tensor (a shape without data, e.g. from torch.device('meta') "
            "or low_cpu_mem_usage): load the weights first, then pass model.state_dict()"
        )
    layout = getattr(value, "layout", None)
    if layout is not None and str(layout) != "torch.strided":
        raise ValueError(
            f"{key!r} is a {str(layout).removeprefix('torch.')} tensor, not a dense one: "
            "pass tensor.to_dense()"
        )
    if getattr(value, "is_quantized", False) is True:
        raise ValueError(
            f"{key!r} is a quantized tensor ({value.dtype}): pass tensor.dequantize() "
            "(an embedding table must be floating point)"
        )


def _looks_like_hf(state_dict: Mapping[str, Any]) -> bool:
    """Whether a ``transformer.``-prefixed state dict is HF's rather than nanoGPT's.

    HF's GPT-2 uses ``Conv1D`` (weight ``(D, 3D)``) where nanoGPT uses ``nn.Linear``
    (weight ``(3D, D)``) for ``attn.c_attn``; the tables themselves are the same.
    """
    c_attn = state_dict.get("transformer.h.0.attn.c_attn.weight")
    shape = tuple(getattr(c_attn, "shape", ()))
    return len(shape) == 2 and shape[1] == 3 * shape[0]


def _some_keys(state_dict: Mapping[str, Any], limit: int = 8) -> str:
    keys = sorted(state_dict)
    more = f", ... ({len(keys)} in all)" if len(keys) > limit else ""
    return f"it has: {', '.join(map(repr, keys[:limit]))}{more}" if keys else "it is empty"


def _expected_shapes(model: Any) -> dict[str, tuple[int, int]]:
    return {
        "tok_emb": (int(model.vocab_size), int(model.features)),
        "pos_emb": (int(model.context_length), int(model.features)),
    }


def _needs_pos(model: Any) -> bool:
    """Whether ``model`` has a learned position table (``position="learned"``, the default)."""
    return model is None or getattr(model, "position", "learned") == "learned"


def _check_table(key: str, table: np.ndarray, expected: tuple[int, int] | None, against: str):
    if not np.issubdtype(table.dtype, np.floating) and table.dtype.name != "bfloat16":
        raise ValueError(
            f"{key!r} has dtype {table.dtype}, shape {table.shape}: an embedding table "
            "must be floating point"
        )
    if table.ndim != 2:
        raise ValueError(f"{key!r} has shape {table.shape}, but a table has shape (rows, features)")
    if expected is not None and table.shape != expected:
        raise ValueError(f"{key!r} has shape {table.shape}, but {against} expects {expected}")


def _check_no_downcast(key: str, table: np.ndarray) -> None:
    import jax

    if table.dtype.itemsize == 8 and not jax.config.read("jax_enable_x64"):
        raise ValueError(
            f"{key!r} is {table.dtype}, but jax_enable_x64 is off, so JAX would silently round "
            "it to float32; cast it yourself (e.g. tensor.float()) or enable x64"
        )


def params_from_torch(
    state_dict: Mapping[str, Any], layout: str | None = None, *, model: Any = None
) -> dict:
    """``{'params': ...}`` for ``InputEmbedding`` from a torch state dict.

    Only the embedding tables are taken, so a whole model's state dict works;
    the keys used are logged (logger ``flax_embed.convert``, level INFO) and
    ``detect_layout`` returns them. Tables are copied and keep their dtype. A
    ``model`` without a learned position table (``position="sinusoidal"`` or
    ``"none"``) takes the token table alone (``{'params': {'tok_emb': ...}}``); a
    position table in the state dict is then ignored.

    Example::

      >>> import numpy as np
      >>> from flax_embed import InputEmbedding
      >>> sd = {"wte.weight": np.ones((100, 16), np.float32),   # or torch_model.state_dict(),
      ...       "wpe.weight": np.ones((8, 16), np.float32)}     # e.g. HF GPT2Model's
      >>> model = InputEmbedding(vocab_size=100, context_length=8, features=16)
      >>> params = params_from_torch(sd, model=model)
      >>> params["params"]["tok_emb"]["embedding"].shape
      (100, 16)

    Args:
      state_dict: name → torch tensor or NumPy array; ``(V, D)`` and ``(C, D)`` tables.
      layout: ``"book"``, ``"hf"`` or ``"nanogpt"``; None detects it.
      model: an ``InputEmbedding`` (anything with ``vocab_size``, ``context_length``
        and ``features``, and optionally ``position``) whose shapes the tables must
        have; None only checks that the two tables are 2-D with the same width.

    Raises:
      TypeError: ``state_dict`` is not a mapping (a module, a tensor, None...):
        pass ``model.state_dict()``.
      ValueError: an unknown or undetectable layout; a missing key; a table that is
        not an array (a Python list), a meta, sparse or quantized tensor; a table whose
        shape differs from ``model``'s (the message names the key and both shapes);
        a non-float table; a float64 table while JAX's x64 is off (it would be
        rounded to float32).
    """
    _check_state_dict(state_dict)
    keys = _find_keys(state_dict, layout, need_pos=_needs_pos(model))
    return _convert(lambda key: state_dict[key], keys, model, len(state_dict))


def _convert(table_of, keys: EmbeddingKeys, model: Any, total: int) -> dict:
    """``params_from_torch`` once the keys are known; ``table_of(key)`` gives a table."""
    expected = _expected_shapes(model) if model is not None else None
    against = ""
    if model is not None:
        v, c, d = model.vocab_size, model.context_length, model.features
        against = f"{type(model).__name__}(vocab_size={v}, context_length={c}, features={d})"
    pairs = list(zip(_MODULES, keys.names, strict=True))[: 2 if _needs_pos(model) else 1]
    params = {}
    for module, key in pairs:
        value = table_of(key)
        _check_has_data(key, value)
        table = to_numpy(value)
        _check_table(key, table, None if expected is None else expected[module], against)
        _check_no_downcast(key, table)
        params[module] = {"embedding": np.array(table, copy=True)}
    tok = params["tok_emb"]["embedding"]
    if "pos_emb" in params:
        pos = params["pos_emb"]["embedding"]
        if tok.shape[1] != pos.shape[1]:
            raise ValueError(
                f"{keys.tok_emb!r} has shape {tok.shape} and {keys.pos_emb!r} has shape "
                f"{pos.shape}: the two tables must have the same number of features"
            )
        if tok.dtype != pos.dtype:
            raise ValueError(
                f"{keys.tok_emb!r} is {tok.dtype} but {keys.pos_emb!r} is {pos.dtype}; "
                "cast them to one dtype first"
            )
    logger.info(
        "params_from_torch: layout %r, took %s; ignored %d other keys",
        keys.layout,
        " and ".join(f"{key!r} {params[module]['embedding'].shape}" for module, key in pairs),
        total - len(pairs),
    )
    return {"params": params}


def params_to_numpy(params: Mapping[str, Any], layout: str = "book") -> dict[str, np.ndarray]:
    """The tables of ``params`` as a state dict of NumPy arrays under ``layout``'s keys.

    The token table, and the position table when ``params`` has one (a model with
    ``position="sinusoidal"`` or ``"none"`` has none: its fixed sinusoidal table is
    not a parameter).

    Args:
      params: ``InputEmbedding`` params, with or without the ``'params'`` level;
        JAX or NumPy arrays.
      layout: ``"book"``, ``"hf"`` (``wte.weight``/``wpe.weight``) or ``"nanogpt"``.

    Raises:
      ValueError: no token table, or a non-float table.
    """
    keys = _layout_keys(layout)
    tree = params.get("params", params)
    state = {}
    for module, key in zip(_MODULES, keys.names, strict=True):
        if module == "pos_emb" and isinstance(tree, Mapping) and module not in tree:
            break  # a model without a learned position table
        try:
            table = tree[module]["embedding"]
        except (KeyError, TypeError):
            raise ValueError(
                f"params have no {module!r}/'embedding' (for {key!r}); "
                f"top-level keys: {sorted(tree) if isinstance(tree, Mapping) else type(tree)}"
            ) from None
        if hasattr(table, "unbox"):  # nn.Partitioned (InputEmbedding(logical_axes=True))
            table = table.unbox()
        array = np.array(to_numpy(table), copy=True)  # owned, writable, C-contiguous
        _check_table(f"{module}/embedding", array, None, "")
        state[key] = array
    return state


def params_to_torch(params: Mapping[str, Any], layout: str = "book") -> dict:
    """A torch state dict of the tables (``params_to_numpy``'s), for ``load_state_dict``.

    ``layout="book"`` loads into ``parity.torch_reference.TorchInputEmbedding`` (or
    the book's ``GPTModel`` with ``strict=False``); ``"hf"`` gives ``wte.weight`` /
    ``wpe.weight``; ``"nanogpt"`` the ``transformer.``-prefixed names.
    """
    import torch

    state = {}
    for key, array in params_to_numpy(params, layout).items():
        if array.dtype.name == "bfloat16":
            state[key] = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        else:
            state[key] = torch.from_numpy(array)
    return state


def save_params(
    path: str | os.PathLike[str], params: Mapping[str, Any], layout: str = "book"
) -> None:
    """Writes the tables (``params_to_numpy``'s) to a safetensors file, atomically.

    The file loads with ``safetensors.torch.load_file`` straight into a torch module
    of ``layout`` (``load_state_dict(..., strict=True)`` for ``TorchInputEmbedding``),
    and back with ``load_params``. It is written to a temporary file next to
    ``path`` and renamed: a failed save never leaves a partial file at ``path``.

    Raises:
      ValueError: params without a token table, or non-float tables.
      OSError: the file cannot be written (the message names ``path``).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    state = params_to_numpy(params, layout)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            save_file(state, tmp, metadata={"format": "pt", "layout": layout})
    except OSError as e:
        raise OSError(e.errno, f"{path}: cannot write ({e.strerror or e})") from None
    except SafetensorError as e:  # the Rust writer's I/O errors; they name its temporary file
        reason = re.sub(r"\S*\.flax-embed-\S*", str(path), str(e))
        raise OSError(f"{path}: cannot write ({reason})") from None


_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
}  # fmt: skip


class _Header:
    """A tensor of a safetensors file, known from its header: dtype, shape, byte range."""

    def __init__(self, entry: Mapping[str, Any]):
        self.dtype_name: str = entry["dtype"]
        self.shape = tuple(entry["shape"])
        self.begin, self.end = entry["data_offsets"]


def _safetensors_index(path: Path) -> tuple[dict[str, _Header], int]:
    """``({name: _Header}, offset of the data)`` of a safetensors file; reads the header only.

    safetensors' own parser (``safe_open``) validates the whole header first (its
    size, the dtypes, shapes and offsets against the file's length); the header is
    then read again here for the byte ranges, which ``safe_open`` does not expose.
    """
    from safetensors import safe_open

    try:
        with open(path, "rb") as f:  # first: Python's errors name a missing file or a folder
            with safe_open(path, framework="numpy"):
                pass
            length = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(length))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as e:
        raise OSError(e.errno, f"{path}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # SafetensorError: a bad header or truncated data
        raise ValueError(f"{path}: not a safetensors file ({e})") from None
    header.pop("__metadata__", None)
    return {name: _Header(entry) for name, entry in header.items()}, 8 + length


def _read_tensor(path: Path, f, name: str, tensor: _Header, data_offset: int) -> np.ndarray:
    """The tensor ``name`` read from the open file ``f``: only its own bytes."""
    import ml_dtypes

    dtype_name = _SAFETENSORS_DTYPES.get(tensor.dtype_name)
    if dtype_name is None:  # e.g. float8 weights
        raise ValueError(
            f"{path}: {name!r} has dtype {tensor.dtype_name}: an embedding table must be "
            "float64, float32, float16 or bfloat16"
        )
    dtype = ml_dtypes.bfloat16 if dtype_name == "bfloat16" else np.dtype(dtype_name)
    out = np.empty(tensor.shape, dtype)
    view = out.reshape(-1).view(np.uint8).data  # a writable memoryview of out
    f.seek(data_offset + tensor.begin)
    done = 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            raise ValueError(f"{path}: not a safetensors file (truncated in {name!r})")
        done += n
    return out


def load_params(
    path: str | os.PathLike[str], layout: str | None = None, *, model: Any = None
) -> dict:
    """``InputEmbedding`` params from a safetensors file (``save_params``'s or torch's).

    Any safetensors file holding the tables works, e.g. one written by
    ``safetensors.torch.save_file(module.state_dict(), path)`` or a whole model's:
    only the header and the tables' own bytes are read, so a whole model's file
    costs the memory of its embedding tables, not of the file. Arguments and checks
    are those of ``params_from_torch`` (a ``model`` with ``position="sinusoidal"`` or
    ``"none"`` reads the token table alone).

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: not a safetensors file, or the checks of ``params_from_torch``.
    """
    path = Path(path)
    index, data_offset = _safetensors_index(path)
    keys = _find_keys(index, layout, need_pos=_needs_pos(model))
    try:
        with open(path, "rb") as f:

            def table_of(key: str) -> np.ndarray:
                return _read_tensor(path, f, key, index[key], data_offset)

            return _convert(table_of, keys, model, len(index))
    except OSError as e:
        raise OSError(e.errno, f"{path}: cannot read ({e.strerror or e})") from None
