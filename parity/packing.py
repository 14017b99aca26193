"""Packing rows: ``flax_embed.data.PackedDataset`` against Grain and Hugging Face.

* **Grain**: the rows of ``PackedDataset`` equal, field for field, those of Grain's
  ``FirstFitPackIterDataset`` / ``BestFitPackIterDataset`` (``shuffle_bins=False``)
  and ``ConcatThenSplitIterDataset`` fed the same elements ``{"inputs": doc[:-1],
  "targets": doc[1:]}`` in the same order with the same settings, over a real corpus
  (``packing_corpus``: thousands of documents of GPT-2 ids, some longer than a row,
  some empty). Integers: bit-identical (tolerance 0).
* **Hugging Face** ``DataCollatorWithFlattening``: its ``position_ids`` for the
  documents of each row equal ``inputs_positions`` (tolerance 0).
* **Packing changes nothing**: each document of a packed batch gives the same
  learned and sinusoidal embeddings (gathers, bit-identical), RoPE-rotated q/k
  (elementwise at the same positions, bit-identical) and causal attention under
  ``segment_mask`` (the packed and the lone computation differ only in summation
  order, the masked keys adding exact zeros: bound ``attention_order_bound``) as
  the same document run alone.
* **HF Llama attention**: the same packed row through ``LlamaAttention`` with packed
  ``position_ids`` (transformers 5 derives the block-diagonal mask from them,
  ``masking_utils.find_packed_sequence_indices``; no attention mask is passed)
  equals flax-embed's RoPE + ``segment_mask`` attention, in float64 (bound
  ``float64_attention_bound``).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from flax_embed.data.packing import FEATURES, PACKING_METHODS, Documents, PackedDataset
from flax_embed.positions import RoPE, segment_mask
from parity.common import compare, device_kind, on_backend
from parity.result import CheckResult

__all__ = [
    "SEQ_LEN",
    "attention",
    "attention_order_bound",
    "changes_nothing_rows",
    "grain_rows",
    "grain_packed",
    "hf_flattening_rows",
    "hf_llama_rows",
    "packing_checks",
    "packing_corpus",
    "qkv_attention",
]

SEQ_LEN = 128
"""Row length of the parity rows."""
U32 = 2.0**-24
U64 = 2.0**-53


def gamma(n: int, u: float) -> float:
    """Higham's ``gamma_n = n·u / (1 - n·u)``: the relative error bound of an n-term sum."""
    return n * u / (1 - n * u)


@functools.cache
def packing_corpus(num_docs: int = 3000, seed: int = 0) -> Documents:
    """Documents of real GPT-2 ids with varied lengths, some longer than ``SEQ_LEN``.

    The ids are those of the bundled sample text (cycled); document ``i`` starts at a
    seeded offset into them, its length drawn from a seeded log-normal (median about
    40 tokens, about 5% longer than ``SEQ_LEN + 1``), with a few empty and one-token
    documents mixed in.
    """
    from parity.common import _token_ids

    ids = np.asarray(_token_ids(), dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(seed))
    lengths = np.minimum(rng.lognormal(np.log(40), 0.9, num_docs).astype(np.int64), 600)
    lengths[rng.choice(num_docs, 20, replace=False)] = 0
    lengths[rng.choice(num_docs, 20, replace=False)] = 1
    starts = rng.integers(0, len(ids), num_docs)
    stream = np.tile(ids, -(-(len(ids) + int(lengths.max())) // len(ids)))
    docs = [stream[s : s + n] for s, n in zip(starts, lengths, strict=True)]
    return Documents.from_arrays(docs)


def _grain_elements(docs: Documents, ds: PackedDataset) -> list[dict[str, np.ndarray]]:
    """The elements Grain packs: per document (in packing order) of at least 2 tokens,
    ``{"inputs": piece[:-1], "targets": piece[1:]}``, pieces of ``seq_len + 1`` tokens
    for first/best fit (Grain requires elements no longer than the row), the whole
    document for concat-then-split; ``"truncate"`` keeps the first piece only."""
    s = ds.seq_len
    out = []
    for i in ds.document_order():
        doc = np.asarray(docs[int(i)], dtype=np.int32)
        if len(doc) < 2:
            continue
        if ds.long_documents == "truncate":
            doc = doc[: s + 1]
        if ds.method == "concat_split":
            pieces = [doc]
        else:
            pieces = [doc[k : k + s + 1] for k in range(0, len(doc) - 1, s)]
        out += [{"inputs": p[:-1], "targets": p[1:]} for p in pieces]
    return out


def grain_packed(ds: PackedDataset) -> dict[str, np.ndarray]:
    """Grain's rows for the documents and settings of ``ds``, stacked ``(R, T)``."""
    import grain
    import grain.experimental as ge

    source = grain.MapDataset.source(_grain_elements(ds.documents, ds)).to_iter_dataset()
    lengths = {"inputs": ds.seq_len, "targets": ds.seq_len}
    if ds.method == "concat_split":
        packed = ge.ConcatThenSplitIterDataset(source, length_struct=lengths)
    else:
        cls = ge.FirstFitPackIterDataset if ds.method == "first_fit" else ge.BestFitPackIterDataset
        packed = cls(
            source,
            length_struct=lengths,
            num_packing_bins=ds.num_packing_bins,
            shuffle_bins=False,
        )
    rows = list(packed)
    return {k: np.stack([np.asarray(r[k]) for r in rows]) for k in FEATURES}


def _stack(rows: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([rows[k].astype(np.int64) for k in FEATURES])


def grain_rows(backend: str, docs: Documents | None = None) -> list[CheckResult]:
    """One row per packing method: every feature of every row equal to Grain's."""
    docs = packing_corpus() if docs is None else docs
    rows = []
    for method in PACKING_METHODS:
        for long_documents in ("split", "truncate"):
            ds = PackedDataset(
                docs, SEQ_LEN, method=method, num_packing_bins=16, long_documents=long_documents
            )
            ours = ds.gather(np.arange(len(ds)))
            theirs = grain_packed(ds)
            mine, ref = _stack(ours), _stack(theirs)
            if mine.shape != ref.shape:
                raise ValueError(f"{method}: {mine.shape[1]} rows, Grain {ref.shape[1]}")
            rows.append(
                compare(
                    f"packing {method} long={long_documents} vs grain "
                    f"({len(docs)} docs, T={SEQ_LEN})",
                    backend,
                    mine,
                    ref,
                    note=f"6 features x {len(ds)} rows; padding {ds.padding_fraction:.2%}, "
                    f"{ds.skipped_documents} docs < 2 tokens skipped",
                )
            )
    return rows


def _row_pieces(row: dict[str, np.ndarray]) -> list[slice]:
    seg = row["inputs_segment_ids"]
    return [slice(int(a[0]), int(a[-1]) + 1) for s in np.unique(seg[seg > 0])
            for a in [np.flatnonzero(seg == s)]]  # fmt: skip


def hf_flattening_rows(backend: str, num_rows: int = 200) -> list[CheckResult]:
    """``inputs_positions`` equal to ``DataCollatorWithFlattening``'s ``position_ids``."""
    from transformers import DataCollatorWithFlattening

    collate = DataCollatorWithFlattening(return_tensors="np")
    ds = PackedDataset(packing_corpus(), SEQ_LEN, method="best_fit", num_packing_bins=16)
    rows = ds.gather(np.arange(min(num_rows, len(ds))))
    ours, theirs = [], []
    for b in range(len(rows["inputs"])):
        row = {k: v[b] for k, v in rows.items()}
        pieces = _row_pieces(row)
        batch = collate([{"input_ids": row["inputs"][p].tolist()} for p in pieces])
        used = pieces[-1].stop
        ours.append(row["inputs_positions"][:used])
        theirs.append(np.asarray(batch["position_ids"])[0])
        ours.append(row["inputs"][:used])
        theirs.append(np.asarray(batch["input_ids"])[0])
    return [
        compare(
            "packing inputs_positions vs HF DataCollatorWithFlattening position_ids",
            backend,
            np.concatenate(ours).astype(np.int64),
            np.concatenate(theirs).astype(np.int64),
            note=f"{len(rows['inputs'])} best_fit rows, positions and ids of the used cells",
        )
    ]


# -- "packing changes nothing" ----------------------------------------------------------


def attention(q_BxTxHxD, k_BxTxHxD, v_BxTxHxD, mask_Bx1xTxT):
    """Plain softmax attention, float: ``softmax(q·kᵀ/√D + mask) · v``, ``(B, T, H, D)``.

    Masked scores are set to the dtype's lowest finite value, so their ``exp`` is an
    exact 0 (a padding query, all masked, gets a uniform average it never uses).
    """
    d = q_BxTxHxD.shape[-1]
    scores = jnp.einsum("bqhd,bkhd->bhqk", q_BxTxHxD, k_BxTxHxD) / jnp.sqrt(
        jnp.asarray(d, q_BxTxHxD.dtype)
    )
    scores = jnp.where(mask_Bx1xTxT, scores, jnp.finfo(scores.dtype).min)
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v_BxTxHxD)


def attention_order_bound(q, k, v, u: float = U32) -> np.ndarray:
    """|Δ| bound between two evaluations of ``attention`` of one document that differ
    only in summation order (packed: the document sits among other keys whose
    ``exp`` is an exact 0; alone: it does not), per output entry ``(T, H, D)``.

    Each of the three reductions (q·k over ``D``, Σ exp over ``n`` keys, Σ p·v over
    ``n``) is within ``gamma`` of its exact value in both, so within ``2gamma`` of each other.
    A score error ``E = 2gamma_D·Σ|q||k|/√D`` changes each ``exp`` by a factor within
    ``e^{±E}``; with ``exp``/division roundings (the same function on the same or
    nearby inputs, ``2u`` each) the weights change relatively by at most ``rho =
    2(e^E - 1) + 4u + 2gamma_n``, and the output by ``(rho + 2gamma_n)·Σ p|v|``.
    """
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    t, _, d = q.shape
    s = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(d)
    e_abs = 2 * gamma(d, u) * np.einsum("qhd,khd->hqk", np.abs(q), np.abs(k)) / math.sqrt(d)
    causal = np.tril(np.ones((t, t), bool))
    s = np.where(causal, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    e_max = np.where(causal, e_abs, 0).max(-1)  # (H, Tq)
    rho = 2 * np.expm1(e_max) + 4 * u + 2 * gamma(t, u)
    pv_abs = np.einsum("hqk,khd->qhd", p, np.abs(v))
    return (rho.T[..., None] + 2 * gamma(t, u)) * pv_abs


def _packed_batch(num_rows: int = 4):
    ds = PackedDataset(packing_corpus(), SEQ_LEN, method="best_fit", num_packing_bins=16)
    return ds.gather(np.arange(num_rows))


@functools.cache
def _embeddings(backend: str) -> dict:
    """Jitted ``InputEmbedding`` applies and their params, ``"learned"`` and ``"sinusoidal"``."""
    from flax_embed.layers.linen import InputEmbedding

    out = {}
    with on_backend(backend):
        for mode in ("learned", "sinusoidal"):
            model = InputEmbedding(vocab_size=50257, context_length=SEQ_LEN, features=64,
                                   position=mode)  # fmt: skip
            params = model.init(jax.random.key(0), np.zeros((1, SEQ_LEN), np.int32))
            out[mode] = (jax.jit(model.apply), params)
    return out


_ROPE = RoPE(head_dim=32, base=10_000.0)


@jax.jit
def qkv_attention(x_BxTx3xHxD, pos_BxT, mask_Bx1xTxT):
    """RoPE-rotated q and k of ``x[:, :, 0]`` / ``x[:, :, 1]`` and their attention over
    ``x[:, :, 2]``: ``(q, k, out)``, each ``(B, T, H, D)``."""
    q = _ROPE.apply(x_BxTx3xHxD[:, :, 0], pos_BxT)
    k = _ROPE.apply(x_BxTx3xHxD[:, :, 1], pos_BxT)
    return q, k, attention(q, k, x_BxTx3xHxD[:, :, 2], mask_Bx1xTxT)


def changes_nothing_rows(
    backend: str,
    *,
    positions_key: str = "inputs_positions",
    mask_fn=segment_mask,
    num_rows: int = 8,
) -> list[CheckResult]:
    """Each document of a packed batch against the same document alone (5 rows).

    ``positions_key`` and ``mask_fn`` exist to show the rows' sensitivity: positions
    that do not restart or a mask that leaks make them fail.
    """
    batch = _packed_batch(num_rows)
    ids, seg = batch["inputs"], batch["inputs_segment_ids"]
    if positions_key == "inputs_positions":
        pos = batch["inputs_positions"]
    else:  # counting across documents: the book's windows
        pos = np.broadcast_to(np.arange(SEQ_LEN, dtype=np.int32), ids.shape)
    h, d = 4, 32
    rng = np.random.Generator(np.random.PCG64(21))
    x = rng.standard_normal((*ids.shape, 3, h, d)).astype(np.float32)
    rows: list[CheckResult] = []
    with on_backend(backend):
        emb = _embeddings(backend)
        packed_emb = {m: np.asarray(f(p, ids, positions=pos)) for m, (f, p) in emb.items()}
        q_p, k_p, o_p = map(np.asarray, qkv_attention(x, pos, mask_fn(seg)))
        # Each document alone: at the start of a row of its own (the rest padding), all
        # documents in one batch, so that one compiled program serves them all.
        where = [(b, sl) for b in range(len(ids))
                 for sl in _row_pieces({k: v[b] for k, v in batch.items()})]  # fmt: skip
        one_ids = np.zeros((len(where), SEQ_LEN), np.int32)
        one_seg = np.zeros_like(one_ids)
        one_x = np.zeros((len(where), SEQ_LEN, 3, h, d), np.float32)
        for i, (b, sl) in enumerate(where):
            n = sl.stop - sl.start
            one_ids[i, :n], one_seg[i, :n], one_x[i, :n] = ids[b, sl], 1, x[b, sl]
        one_pos = np.broadcast_to(np.arange(SEQ_LEN, dtype=np.int32), one_ids.shape)
        one_emb = {m: np.asarray(f(p, one_ids, positions=one_pos)) for m, (f, p) in emb.items()}
        q1, k1, o1 = map(np.asarray, qkv_attention(one_x, one_pos, segment_mask(one_seg)))
        alone: dict[str, list] = {k: [] for k in ("learned", "sinusoidal", "q", "k", "o", "bound")}
        packed: dict[str, list] = {k: [] for k in alone}
        for i, (b, sl) in enumerate(where):
            n = sl.stop - sl.start
            for name, one, many in (("learned", one_emb["learned"], packed_emb["learned"]),
                                    ("sinusoidal", one_emb["sinusoidal"], packed_emb["sinusoidal"]),
                                    ("q", q1, q_p), ("k", k1, k_p), ("o", o1, o_p)):  # fmt: skip
                alone[name].append(one[i, :n])
                packed[name].append(many[b, sl])
            alone["bound"].append(attention_order_bound(q1[i, :n], k1[i, :n], one_x[i, :n, 2]))
    n_docs = len(alone["q"])
    for name in ("learned", "sinusoidal", "q", "k"):
        label = {"q": "RoPE q", "k": "RoPE k"}.get(name, f"{name} embedding")
        rows.append(compare(
            f"packing changes nothing: {label} ({n_docs} docs of {num_rows} packed rows)",
            backend, np.concatenate(packed[name]), np.concatenate(alone[name]),
            note="same arithmetic (gathers / elementwise at the same positions): bit-identical",
        ))  # fmt: skip
    diff = np.concatenate(
        [np.abs(a - b).ravel() for a, b in zip(packed["o"], alone["o"], strict=True)]
    )
    bound = np.concatenate([b.ravel() for b in alone["bound"]])
    within = bool(np.all(diff <= bound))
    rows.append(
        CheckResult(
            check=f"packing changes nothing: causal attention + segment_mask ({n_docs} docs)",
            backend=backend,
            device_kind=device_kind(backend),
            dtype="float32",
            shape=(int(diff.size),),
            max_abs_diff=float(diff.max()),
            tolerance=float(bound.max()) if within else 0.0,
            bit_identical=bool(np.all(diff == 0)),
            note="per-entry bound attention_order_bound (summation order only); "
            f"max |Δ|/bound {float((diff / bound).max()):.3g}",
        )
    )
    return rows


def float64_attention_bound(q, k, v, wo, seg) -> np.ndarray:
    """|Δ| bound between flax-embed's and HF's float64 RoPE attention of one packed
    row, per output entry ``(T, E)``; ``q``, ``k`` ``(T, H, D)`` rotated, ``v`` too.

    Both sides take the same float32 ``inv_freq`` (checked) and the same float32
    angle product, then float32 cos/sin from different libm code, each within 1 ULP
    (``2^-24`` absolute, as ``|cos|, |sin| ≤ 1``) of exact: they differ by at most
    ``c = 2^-23``. A rotated entry ``q_t·cos - q_t'·sin`` then differs by at most
    ``c(|q_t| + |q_t'|) ≤ c·√2·‖(q_t, q_t')‖`` (unrotated; the rotation keeps the pair's
    norm, so the rotated pair's norm serves), a score by ``E_j = Σ_t (|Δq_t|(|k_t| +
    |Δk_t|) + |q_t||Δk_t|)/√D``, and since ``∂o/∂s_j = p_j(v_j - o)`` the attention
    output by ``Σ_j p_j|v_j - o|·E_j`` to first order; doubled for the higher-order
    terms (``E ≪ 1``), plus float64 roundings ``gamma_{4n}``-relative to ``Σ p|v|``
    (``n = E + T + 8``), then through ``|Wo|``.
    """
    t, h, d = q.shape
    c = 2.0**-23
    mask = np.asarray(segment_mask(seg[None]))[0, 0]
    half = d // 2
    pair = lambda a: np.concatenate([a[..., half:], a[..., :half]], -1)  # noqa: E731
    dq = c * math.sqrt(2) * np.hypot(q, pair(q))
    dk = c * math.sqrt(2) * np.hypot(k, pair(k))
    e_hqk = (np.einsum("qhd,khd->hqk", dq, np.abs(k) + dk)
             + np.einsum("qhd,khd->hqk", np.abs(q), dk)) / math.sqrt(d)  # fmt: skip
    s = np.where(mask, np.einsum("qhd,khd->hqk", q, k) / math.sqrt(d), -np.inf)
    top = np.where(mask.any(-1)[None, :, None], s.max(-1, keepdims=True), 0.0)
    w = np.where(mask, np.exp(s - top), 0.0)
    p = w / np.maximum(w.sum(-1, keepdims=True), np.finfo(np.float64).tiny)
    o = np.einsum("hqk,khd->qhd", p, v)
    spread = np.abs(v[None, :, :, :] - o[:, None, :, :])  # (Tq, Tk, H, D)
    first = np.einsum("hqk,qkhd->qhd", p * e_hqk, spread)
    n = wo.shape[1] + t + 8
    rounding = 4 * gamma(4 * n, U64) * np.einsum("hqk,khd->qhd", p, np.abs(v))
    return (2 * first + rounding).reshape(t, h * d) @ np.abs(wo).T


def hf_llama_rows(backend: str, *, mask_fn=segment_mask, num_rows: int = 2) -> list[CheckResult]:
    """A packed row through HF ``LlamaAttention`` (packed ``position_ids``, no mask)
    against flax-embed's RoPE + ``segment_mask`` attention, float64."""
    import torch
    from transformers import LlamaConfig
    from transformers.masking_utils import create_causal_mask
    from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding

    h, d = 4, 16
    e = h * d
    config = LlamaConfig(hidden_size=e, num_attention_heads=h, num_key_value_heads=h,
                         head_dim=d, attention_bias=False, rope_theta=10_000.0,
                         max_position_embeddings=SEQ_LEN)  # fmt: skip
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    attn = LlamaAttention(config, layer_idx=0).double().eval()
    rotary = LlamaRotaryEmbedding(config).double()
    batch = _packed_batch(num_rows)
    seg, pos = batch["inputs_segment_ids"], batch["inputs_positions"]
    rng = np.random.Generator(np.random.PCG64(7))
    x = rng.standard_normal((num_rows, SEQ_LEN, e))
    xt = torch.from_numpy(x)
    pos_t = torch.from_numpy(pos.astype(np.int64))
    with torch.no_grad():
        mask = create_causal_mask(config, xt, None, None, position_ids=pos_t)
        ref = attn(xt, position_embeddings=rotary(xt, pos_t), attention_mask=mask)[0].numpy()
    w = {n: getattr(attn, f"{n}_proj").weight.detach().numpy() for n in ("q", "k", "v", "o")}
    rope = RoPE(head_dim=d, base=10_000.0)
    with jax.enable_x64(True), on_backend(backend):
        xj = jnp.asarray(x)
        q = rope.apply((xj @ w["q"].T).reshape(num_rows, SEQ_LEN, h, d), pos)
        k = rope.apply((xj @ w["k"].T).reshape(num_rows, SEQ_LEN, h, d), pos)
        v = (xj @ w["v"].T).reshape(num_rows, SEQ_LEN, h, d)
        ours = np.asarray(attention(q, k, v, mask_fn(seg)).reshape(num_rows, SEQ_LEN, e) @ w["o"].T)
        q_rot, k_rot, v_64 = np.asarray(q), np.asarray(k), np.asarray(v)
    real = seg > 0  # HF makes each padding cell its own sequence; compare the documents
    bound_BxTxE = np.stack([float64_attention_bound(q_rot[b], k_rot[b], v_64[b], w["o"], seg[b])
                            for b in range(num_rows)])  # fmt: skip
    delta = np.abs(ours - ref)[real]
    within = bool(np.all(delta <= bound_BxTxE[real]))
    diff = float(delta.max())
    bound = float(bound_BxTxE[real].max())
    return [
        CheckResult(
            check=f"packing: HF LlamaAttention (packed position_ids) vs RoPE + segment_mask "
            f"({num_rows}x{SEQ_LEN})",
            backend=backend,
            device_kind=device_kind(backend),
            dtype="float64",
            shape=tuple(ours[real].shape),
            max_abs_diff=diff,
            tolerance=bound if within else 0.0,
            bit_identical=bool(np.array_equal(ours[real], ref[real])),
            note="transformers derives the block mask from position_ids "
            "(find_packed_sequence_indices); per-entry bound float64_attention_bound, "
            f"max |Δ|/bound {float((delta / bound_BxTxE[real]).max()):.3g}",
        )
    ]


def packing_checks(backend: str) -> list[CheckResult]:
    """Every packing row on ``backend``."""
    rows = grain_rows(backend)
    rows += hf_flattening_rows(backend)
    rows += changes_nothing_rows(backend)
    rows += hf_llama_rows(backend)
    return rows
