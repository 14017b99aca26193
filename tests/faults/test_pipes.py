"""Standard output closed early (``| head``) or on a full disk (``> /dev/full``).

A closed pipe: exit 1 and nothing on stderr (Python's documented SIGPIPE recipe:
stdout pointed at /dev/null, no "Exception ignored" at exit); the files written
before the print are complete. A full stdout: exit 2 and one line.
"""

from __future__ import annotations

import numpy as np
import pytest

from flax_embed.data import read_token_file

from .conftest import assert_one_line, ours, run_scenarios

pytestmark = pytest.mark.tokenizer  # its children tokenize: skip up front offline


def test_stdout_closed_or_full(tmp_path, corpus):
    runs = []
    for stdout in ("broken-pipe", "full"):
        for command in ("tokenize", "embed"):
            folder = tmp_path / f"{command}-{stdout}"
            folder.mkdir()
            if command == "tokenize":
                argv = ["tokenize", str(corpus), "-o", str(folder / "t.npy")]
            else:
                argv = ["embed", "--features", "8", "--json", "--out", str(folder / "e.npy")]
            scenario = {"cwd": str(folder), "argv": argv, "stdout": stdout}
            runs.append((stdout, command, folder, scenario))
    results = run_scenarios([scenario for *_, scenario in runs])
    for (stdout, command, folder, _), result in zip(runs, results, strict=True):
        if stdout == "broken-pipe":
            assert (result["rc"], result["err"]) == (1, ""), (command, result)
        else:
            assert result["rc"] == 2, (command, result)
            assert_one_line(result["err"])
            assert f"flax-embed {command}: error: <stdout>: cannot write (No space" in result["err"]
        assert ours(folder) == []
        if command == "tokenize":  # written before the report is printed: complete
            assert read_token_file(folder / "t.npy").shape[0] > 0
        else:
            assert np.load(folder / "e.npy").shape == (8, 4, 8)
