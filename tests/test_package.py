"""The package's public surface: curated names, one import path each, version."""

import importlib
import importlib.metadata
import pkgutil
import subprocess
import sys

import pytest

import flax_embed


def public_modules():
    """Every module of the package whose name has no private part."""
    names = [flax_embed.__name__]
    for info in pkgutil.walk_packages(flax_embed.__path__, prefix="flax_embed."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return [importlib.import_module(name) for name in names]


def test_the_top_level_exports_the_curated_names_from_their_modules():
    assert flax_embed.Batcher is flax_embed.data.batcher.Batcher
    assert flax_embed.InputEmbedding is flax_embed.layers.linen.InputEmbedding
    assert flax_embed.encode is flax_embed.tokenizer.encode
    assert flax_embed.load_params is flax_embed.convert.load_params
    assert flax_embed.as_token_ids.__module__ == "flax_embed._validation"
    for name in flax_embed.__all__:
        value = getattr(flax_embed, name)
        defined_in = getattr(value, "__module__", None)
        assert defined_in is None or defined_in.startswith("flax_embed."), name


def test_each_module_exports_only_what_it_defines_or_its_subpackage_does():
    # One import path per name: a module's __all__ holds its own names; a package's
    # __init__ may re-export names of its own submodules, never another module's.
    # (flax_embed.positions and flax_embed.nnx were once front modules re-exporting
    # flax_embed.layers.positions / flax_embed.layers.nnx: two paths for RoPE.)
    for module in public_modules():
        is_package = hasattr(module, "__path__")
        home = module.__name__
        for name in getattr(module, "__all__", []):
            value = getattr(module, name)
            defined_in = getattr(value, "__module__", None)
            if defined_in is None or not defined_in.startswith("flax_embed"):
                continue  # constants, and typing aliases of outside types
            if home == "flax_embed":
                continue  # the curated top level, checked above
            ok = defined_in == home or (is_package and defined_in.startswith(home + "."))
            assert ok, f"{home}.{name} is defined in {defined_in}"


@pytest.mark.parametrize(
    "module", ["flax_embed.layers.positions", "flax_embed.layers.nnx", "flax_embed.batcher"]
)
def test_an_old_module_path_does_not_import(module):
    with pytest.raises(ModuleNotFoundError, match=module.replace(".", r"\.")):
        importlib.import_module(module)


@pytest.mark.parametrize("name", ["epoch_permutation", "ENDOFTEXT", "nope"])
def test_a_name_not_exported_is_an_attribute_error(name):
    with pytest.raises(AttributeError, match=f"no attribute '{name}'"):
        getattr(flax_embed, name)


def test_importing_installs_no_import_hook_of_its_own():
    code = "import sys\nimport flax_embed\nprint([type(f).__module__ for f in sys.meta_path])\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "flax_embed" not in out.stdout and "[" in out.stdout


def test_star_import_gives_the_curated_names_and_keeps_flax_nnx():
    code = (
        "from flax import nnx\n"
        "from flax_embed import *\n"
        "import flax, flax_embed\n"
        "assert nnx is flax.nnx, nnx\n"
        "names = {k for k in globals() if not k.startswith('_')} - {'flax', 'flax_embed', 'nnx'}\n"
        "print(sorted(names) == sorted(flax_embed.__all__))\n"
        "modules = [n for n in flax_embed.__all__ if hasattr(getattr(flax_embed, n), '__name__')\n"
        "           and type(getattr(flax_embed, n)).__name__ == 'module']\n"
        "print(modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["True", "[]"]


def test_the_version_comes_from_the_package_metadata():
    assert flax_embed.__version__ == importlib.metadata.version("flax-embed")
