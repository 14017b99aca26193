"""Full disk (a 64 KiB tmpfs) and read-only targets (a tmpfs remounted read-only).

Needs root to mount; skipped with the reason otherwise (the read-only cases then use
a folder without write permission, which binds non-root users only). Each write:
exit 2 and one line naming the target (never a temporary), the old target untouched,
nothing of ours left.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

import numpy as np
import pytest

from flax_embed._io import TEMP_MARK
from flax_embed.convert import load_params, save_params
from flax_embed.data import read_token_file, write_token_file

from .conftest import assert_one_line, ours, run_scenarios

OLD_IDS = np.arange(5)

pytestmark = pytest.mark.tokenizer  # its children tokenize: skip up front offline


def _params(rows: int, cols: int) -> dict:
    table = np.ones((rows, cols), np.float32)
    return {"tok_emb": {"embedding": table}, "pos_emb": {"embedding": table[:4]}}


@contextlib.contextmanager
def _tmpfs(folder, size: str, read_only: bool):
    """A tmpfs at ``folder`` holding the old targets; read-only if asked. Skips if it cannot."""
    folder.mkdir()
    if os.geteuid() != 0:
        if not read_only:
            pytest.skip("a full disk needs root to mount a small tmpfs (not root)")
        for name in ("tokens.bin", "out.npy"):  # without root: a folder we cannot write to
            _old(folder, name)
        save_params(folder / "params.safetensors", _params(4, 4))
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mount.stderr.strip()}")
    try:
        for name in ("tokens.bin", "out.npy"):
            _old(folder, name)
        save_params(folder / "params.safetensors", _params(4, 4))
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _old(folder, name):
    if name == "tokens.bin":
        write_token_file(folder / name, OLD_IDS)
    else:
        np.save(folder / name, np.zeros(3))


def _assert_untouched(folder):
    np.testing.assert_array_equal(read_token_file(folder / "tokens.bin"), OLD_IDS)
    assert np.load(folder / "out.npy").shape == (3,)
    assert load_params(folder / "params.safetensors")["params"]["tok_emb"]["embedding"].shape == (
        4,
        4,
    )
    assert ours(folder) == []
    assert sorted(p.name for p in folder.iterdir()) == [
        "out.npy",
        "params.safetensors",
        "tokens.bin",
        "tokens.bin.json",
    ]


def _reason(fault: str) -> str:
    if fault == "full":
        return "No space left on device"
    return "Read-only file system" if os.geteuid() == 0 else "Permission denied"


@pytest.mark.parametrize("faults", [("read-only", "full"), ("read-only",)], ids=["root", "user"])
def test_full_disk_and_read_only_target(tmp_path, faults):
    """Both faults in one harness run (each CLI run in a forked child): tokenize, embed --out.

    As root, both (tmpfs mounts); as another user, the read-only target only (a folder
    without write permission: a full disk needs a mount), the root case skipped.
    """
    if (os.geteuid() == 0) != ("full" in faults):
        pytest.skip(
            "a full disk needs root to mount a small tmpfs (not root)"
            if "full" in faults
            else "as root the case above covers it"
        )
    from flax_embed.data.samples import sample_text

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(sample_text() * 40, encoding="utf-8")  # 84 KB of ids > 64 KiB
    with contextlib.ExitStack() as stack:
        folders = {
            fault: stack.enter_context(_tmpfs(tmp_path / fault, "64k", fault == "read-only"))
            for fault in faults
        }
        scenarios, targets = [], []
        for fault, folder in folders.items():
            tokens, out = folder / "tokens.bin", folder / "out.npy"
            scenarios += [
                {"cwd": str(tmp_path), "argv": ["tokenize", str(corpus), "-o", str(tokens)]},
                {"cwd": str(tmp_path), "argv": ["embed", "--features", "1024", "--out", str(out)]},
            ]
            targets += [(fault, tokens), (fault, out)]
        for result, (fault, target) in zip(run_scenarios(scenarios), targets, strict=True):
            assert result["rc"] == 2, result
            assert_one_line(result["err"])
            assert f"{target}: cannot write ({_reason(fault)})" in result["err"]
            assert TEMP_MARK not in result["err"]
        for fault, folder in folders.items():
            target = folder / "params.safetensors"
            with pytest.raises(OSError) as raised:
                save_params(target, _params(256, 256))  # 256 KiB
            assert f"{target}: cannot write" in str(raised.value), fault
            assert TEMP_MARK not in str(raised.value)
            _assert_untouched(folder)
