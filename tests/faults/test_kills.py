"""Every writer killed (SIGKILL, SIGTERM, SIGINT) at each of its steps: the target is as it
was, or complete (or, for a .bin pair killed between its renames, reported as half-written),
one line on stderr, and nothing of ours left after the next write.

The kill points are the writers' steps (the n-th ``os.replace``, ``os.fsync``,
``TokenFileWriter.write``, safetensors' ``save_file``), reached in forked children
(``_harness.py``), so the suite is deterministic and fast: one Python start for all.
"""

from __future__ import annotations

import json
import os
import signal
import stat

import numpy as np
import pytest

from flax_embed._io import atomic_open
from flax_embed.convert import load_params, save_params
from flax_embed.data import TokenFileError, read_token_file, write_token_file
from flax_embed.data.token_files import sidecar_path
from flax_embed.tokenizer import encode

from .conftest import assert_one_line, ours, run_scenarios

OLD_IDS = np.arange(7, dtype=np.int64)

pytestmark = pytest.mark.tokenizer  # its children tokenize: skip up front offline
OLD_MODE = 0o640
K, T, I = "SIGKILL", "SIGTERM", "SIGINT"  # noqa: E741

# (writer, at, nth, when, signal, expected target: "old", "new" or "half")
CASES = [
    ("tokens.npy", "TokenFileWriter.write", 1, "before", K, "old"),
    ("tokens.npy", "TokenFileWriter.write", 1, "after", T, "old"),
    ("tokens.npy", "TokenFileWriter.write", 1, "after", I, "old"),
    ("tokens.npy", "os.fsync", 1, "before", K, "old"),
    ("tokens.npy", "TokenFileWriter.__exit__", 1, "before", I, "old"),  # its temporary dropped
    ("tokens.bin", "TokenFileWriter.__exit__", 1, "before", T, "old"),
    ("tokens.npy", "os.replace", 1, "before", T, "old"),
    ("tokens.npy", "os.replace", 1, "after", K, "new"),
    ("tokens.npy", "os.replace", 1, "after", T, "new"),
    ("tokens.bin", "TokenFileWriter.write", 1, "after", K, "old"),
    ("tokens.bin", "os.replace", 1, "before", K, "old"),  # the sidecar marked incomplete
    ("tokens.bin", "os.replace", 2, "before", K, "half"),  # the data
    ("tokens.bin", "os.replace", 2, "before", T, "old"),
    ("tokens.bin", "os.replace", 2, "after", T, "new"),  # the pair is finished
    ("tokens.bin", "os.replace", 3, "before", K, "half"),  # the sidecar marked complete
    ("tokens.bin", "os.replace", 3, "before", I, "new"),
    ("tokens.bin", "os.replace", 3, "after", K, "new"),
    ("out.npy", "os.replace", 1, "before", K, "old"),  # flax-embed embed --out
    ("out.npy", "os.replace", 1, "before", T, "old"),
    ("out.npy", "os.fsync", 1, "before", I, "old"),
    ("params.safetensors", "save_file", 1, "before", K, "old"),
    ("params.safetensors", "save_file", 1, "after", K, "old"),
    ("params.safetensors", "os.replace", 1, "before", I, "old"),
    ("params.safetensors", "os.replace", 1, "after", K, "new"),
    ("report.json", "os.replace", 1, "before", K, "old"),  # flax-embed parity --json
    ("report.json", "os.replace", 1, "before", I, "old"),
    ("report.json", "os.fsync", 1, "before", K, "old"),
]


def _ids(case) -> str:
    writer, at, nth, when, sig, _ = case
    return f"{writer}-{when}-{at}#{nth}-{sig}"


def _write_old(target):
    if target.suffix in (".npy", ".bin") and target.name.startswith("tokens"):
        write_token_file(target, OLD_IDS)
    elif target.suffix == ".npy":
        np.save(target, np.zeros(3))
    elif target.suffix == ".safetensors":
        save_params(target, _params(1.0))
    else:
        target.write_text('{"old": true}\n')
    for path in (target, sidecar_path(target)):
        if path.exists():
            os.chmod(path, OLD_MODE)


def _params(fill: float) -> dict:
    table = np.full((16, 4), fill, np.float32)
    return {"tok_emb": {"embedding": table}, "pos_emb": {"embedding": table[:4]}}


def _scenario(folder, target, corpus, case) -> dict:
    writer, at, nth, when, sig, _ = case
    scenario = {"cwd": str(folder), "kill": {"at": at, "nth": nth, "when": when, "signal": sig}}
    if writer.startswith("tokens"):
        scenario["argv"] = ["tokenize", str(corpus), "-o", str(target)]
    elif writer == "out.npy":
        scenario["argv"] = ["embed", "--features", "8", "--out", str(target)]
    elif writer == "params.safetensors":
        scenario.update(call="save_params", args=[str(target), 16, 4, 2.0])
    else:
        scenario.update(call="json", args=[str(target)])
    return scenario


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """Runs every case at once (one harness process); ``{case: (folder, target, result)}``."""
    from flax_embed.data.samples import sample_text

    corpus = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    corpus.write_text(sample_text(), encoding="utf-8")
    runs = {}
    for i, case in enumerate(CASES):
        folder = tmp_path_factory.mktemp(f"case{i}")
        target = folder / case[0]
        _write_old(target)
        runs[case] = (folder, target, _scenario(folder, target, corpus, case))
    results = run_scenarios([scenario for _, _, scenario in runs.values()])
    return {
        case: (folder, target, result)
        for (case, (folder, target, _)), result in zip(runs.items(), results, strict=True)
    }, corpus


def _state(target, corpus) -> str:
    """ "old", "new" or "half": what the target holds now."""
    if target.name.startswith("tokens"):
        try:
            ids = read_token_file(target)
        except TokenFileError as e:
            assert "half-written pair" in str(e), e
            return "half"
        if np.array_equal(ids, OLD_IDS):
            return "old"
        assert np.array_equal(ids, encode(corpus.read_text(encoding="utf-8")))
        return "new"
    if target.suffix == ".npy":
        return "old" if np.load(target).shape == (3,) else "new"
    if target.suffix == ".safetensors":
        fill = float(load_params(target)["params"]["tok_emb"]["embedding"][0, 0])
        return {1.0: "old", 2.0: "new"}[fill]
    return "old" if json.loads(target.read_text()) == {"old": True} else "new"


def _write_again(target) -> None:
    """The next write to the same target: it must remove the stale temporaries."""
    if target.name.startswith("tokens"):
        write_token_file(target, OLD_IDS)
    elif target.suffix == ".safetensors":
        save_params(target, _params(1.0))
    else:
        with atomic_open(target) as f:
            f.write(b"{}")


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_kill(killed, case):
    runs, corpus = killed
    folder, target, result = runs[case]
    *_, sig, expected = case
    cli = target.name != "params.safetensors" and target.name != "report.json"
    if sig == K:
        assert result["rc"] == -signal.SIGKILL, result
    else:
        code = 128 + getattr(signal, sig)
        assert result["rc"] == code, result
        assert_one_line(result["err"])
        if cli:
            assert ("terminated" if sig == T else "interrupted") in result["err"]
        assert ours(folder) == [], "an interrupted write left a temporary"
    assert "Traceback" not in result["err"]
    assert _state(target, corpus) == expected
    if expected != "half":  # an existing file keeps its mode
        assert stat.S_IMODE(os.stat(target).st_mode) == OLD_MODE
    _write_again(target)
    assert ours(folder) == [], "the next write did not remove the stale temporaries"
    names = {target.name} | ({sidecar_path(target).name} if target.suffix == ".bin" else set())
    assert {p.name for p in folder.iterdir()} == names
