"""The module paths of flax-embed 0.1, kept importable with a ``DeprecationWarning``.

One table maps each old path to its new home; a ``sys.meta_path`` finder serves
the old name as a module holding the new modules' names, so no shim file is needed
per module and nothing imports the old paths by accident.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

__all__ = ["MOVED", "MOVED_NAMES", "install", "moved_name"]

MOVED: dict[str, tuple[str, ...]] = {
    "flax_embed.atomic": ("flax_embed._io",),
    "flax_embed.batch_iterator": ("flax_embed.data.iterator",),
    "flax_embed.batcher": ("flax_embed.data.sources", "flax_embed.data.batcher"),
    "flax_embed.conversion": ("flax_embed.convert",),
    "flax_embed.embedding": ("flax_embed.layers.common", "flax_embed.layers.linen"),
    "flax_embed.fingerprint": ("flax_embed.data.fingerprint",),
    "flax_embed.parallel_tokenize": ("flax_embed.data.parallel_tokenize",),
    "flax_embed.prefetch": ("flax_embed.distributed.prefetch",),
    "flax_embed.sharding": ("flax_embed.distributed.sharding",),
    "flax_embed.token_files": ("flax_embed.data.token_files", "flax_embed.data.sources"),
    "flax_embed.tokenize_command": ("flax_embed.cli.tokenize",),
    "flax_embed.validation": ("flax_embed._validation",),
}
"""Old module path → the modules that now hold its names."""


MOVED_NAMES = {
    "ENDOFTEXT": "flax_embed.tokenizer",
    "ENDOFTEXT_ID": "flax_embed.tokenizer",
    "epoch_permutation": "flax_embed.data",
    "torch_embedding_init": "flax_embed.layers",
}
"""Names ``flax_embed`` exported in 0.1 and no longer does → where they are now."""


def moved_name(name: str):
    """``flax_embed.<name>`` for a name of ``MOVED_NAMES``, with a ``DeprecationWarning``."""
    if name not in MOVED_NAMES:
        raise AttributeError(f"module 'flax_embed' has no attribute {name!r}")
    warnings.warn(
        f"flax_embed.{name} is deprecated: import it from {MOVED_NAMES[name]}",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(importlib.import_module(MOVED_NAMES[name]), name)


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return types.ModuleType(spec.name)

    def exec_module(self, module) -> None:
        new = MOVED[module.__name__]
        warnings.warn(
            f"{module.__name__} is deprecated: import from {new[-1]} instead",
            DeprecationWarning,
            stacklevel=2,
        )
        for name in new:
            names = vars(importlib.import_module(name))
            module.__dict__.update({k: v for k, v in names.items() if not k.startswith("__")})


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, _Loader())
        return None


def install() -> None:
    """Makes the old paths importable (once per process)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
