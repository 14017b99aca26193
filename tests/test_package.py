"""The package's public surface: curated names, subpackages, version, deprecated paths."""

import importlib
import importlib.metadata
import subprocess
import sys

import pytest

import flax_embed
from flax_embed._deprecated import MOVED, MOVED_NAMES


def test_every_exported_name_exists():
    for name in flax_embed.__all__:
        assert getattr(flax_embed, name) is not None, name


def test_subpackages_are_attributes_of_the_package():
    assert flax_embed.nnx.InputEmbedding.__module__ == "flax_embed.layers.nnx"
    assert flax_embed.positions.RoPE.__module__ == "flax_embed.layers.positions"
    assert flax_embed.data.Batcher is flax_embed.Batcher
    assert flax_embed.layers.InputEmbedding is flax_embed.InputEmbedding


def test_the_version_comes_from_the_package_metadata():
    assert flax_embed.__version__ == importlib.metadata.version("flax-embed")


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_warns_and_holds_the_new_names(old):
    # A fresh interpreter: the old path must import by itself, warn, and expose the names
    # its new homes define.
    code = (
        "import importlib, warnings\n"
        "warnings.simplefilter('error')\n"
        f"try:\n    importlib.import_module({old!r})\n"
        "except DeprecationWarning as e:\n    print(e)\n"
        "warnings.simplefilter('ignore')\n"
        f"m = importlib.import_module({old!r})\n"
        f"for new in {MOVED[old]!r}:\n"
        "    n = importlib.import_module(new)\n"
        "    for k in getattr(n, '__all__', []):\n"
        "        assert getattr(m, k) is getattr(n, k), k\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        f"{old} is deprecated: import from {MOVED[old][-1]} instead",
        "ok",
    ]


@pytest.mark.parametrize("name", sorted(MOVED_NAMES))
def test_a_name_no_longer_exported_warns_and_still_resolves(name):
    with pytest.warns(DeprecationWarning, match=f"flax_embed.{name} is deprecated"):
        value = getattr(flax_embed, name)
    assert value is getattr(importlib.import_module(MOVED_NAMES[name]), name)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        flax_embed.nope  # noqa: B018
