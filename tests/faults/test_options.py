"""Malformed and huge values for every numeric option of every subcommand: one line, exit 2.

The options are found from the parser (every action with a ``type``), so a new
option is covered as soon as it is added.
"""

from __future__ import annotations

import argparse

import pytest

from flax_embed.cli import build_parser, main

from .conftest import assert_one_line


def _numeric_options() -> list[tuple[str, str, object]]:
    found = []
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        for action in parser._actions:
            if action.option_strings and action.type is not None and action.type is not str:
                found.append((name, action.option_strings[-1], action.type))
    return found


OPTIONS = _numeric_options()
VALUES = ["abc", "", "1.5", "1e3", "0x10", "1_0", " 7x", "-1", "0", "9" * 30, "-" + "9" * 30]


def test_every_numeric_option_is_found():
    found = {option for _, option, _ in OPTIONS}
    assert {"--batch-size", "--seed", "--features", "--context-length", "--workers"} <= found


def _invalid(parse, value: str) -> bool:
    try:
        parse(value)
    except (argparse.ArgumentTypeError, ValueError, TypeError):
        return True
    return False  # e.g. --seed -1, or "1_0" (Python's int() takes it)


BAD = [(c, o, v) for c, o, parse in OPTIONS for v in VALUES if _invalid(parse, v)]


@pytest.mark.parametrize(("command", "option", "value"), BAD)
def test_bad_numeric_option_is_one_line(command, option, value, capsys, tmp_path):
    argv = [command, option, value]
    if command == "tokenize":
        argv[1:1] = ["corpus.txt", "-o", str(tmp_path / "t.npy")]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert_one_line(err)
    assert err.startswith(f"flax-embed {command}: error: argument {option}: ")
    assert out == ""


@pytest.mark.tokenizer  # embed tokenizes the sample before it checks the memory
@pytest.mark.parametrize(
    "argv",
    [
        ["--features", "100000000"],  # 50257 x 1e8 float32: 18 TiB
        ["--context-length", "1000000000"],
        ["--features", str(2**31 - 1), "--context-length", str(2**31 - 1)],
    ],
)
def test_tables_larger_than_memory_are_refused_before_allocating(argv, capsys):
    assert main(["embed", *argv]) == 2
    err = capsys.readouterr().err
    assert_one_line(err)
    assert "GiB of memory are available" in err


@pytest.mark.tokenizer
def test_an_allocation_that_fails_anyway_is_one_line(monkeypatch, capsys):
    """Past the memory check, JAX may still run out (other processes): one line, exit 2."""
    import jax

    from flax_embed.layers.linen import InputEmbedding

    def exhausted(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9 bytes")

    monkeypatch.setattr(InputEmbedding, "init", exhausted)
    assert main(["embed", "--features", "8"]) == 2
    err = capsys.readouterr().err
    assert_one_line(err)
    assert "out of memory" in err
