import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flax_embed._io import AtomicFile, atomic_open, atomic_path, interrupts_held

REPO = Path(__file__).resolve().parents[1]


def test_writes_the_whole_file(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_open(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("opener", [atomic_open, atomic_path])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, opener):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"), opener(target):
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_temporary_is_beside_the_target_until_the_rename(tmp_path):
    target = tmp_path / "out.json"
    with atomic_path(target) as tmp:
        assert tmp.parent.parent == tmp_path and tmp != target
        tmp.write_text("{}")
        assert not target.exists()
    assert target.read_text() == "{}"


def test_missing_folder_raises_and_writes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_open(tmp_path / "missing" / "out.bin"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_usual_mode_not_the_temporaries(tmp_path):
    import os

    from flax_embed._io import new_file_mode

    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    target = tmp_path / "out.bin"
    with atomic_open(target) as f:
        f.write(b"x")
    assert new_file_mode() == os.stat(plain).st_mode & 0o777
    assert os.stat(target).st_mode & 0o777 == os.stat(plain).st_mode & 0o777


def test_a_temporary_is_in_place_once_renamed_onto_the_target_and_only_then(tmp_path):
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")
    written = AtomicFile(target)
    written.file.write(b"new")
    written.finish()
    assert not written.in_place()
    written.rename()
    assert written.in_place()
    other = tmp_path / "other"
    other.write_bytes(b"another writer's")  # made while ours exists: another inode
    other.replace(target)
    assert not written.in_place()


def test_a_temporary_dropped_unfinished_is_deleted(tmp_path):
    # As when an interrupt lands between a ``with`` block's end and its ``__exit__``.
    written = AtomicFile(tmp_path / "t.bin")
    written.file.write(b"half")
    del written
    assert list(tmp_path.iterdir()) == []


_FORK_AND_DROP = """
import os, sys
from flax_embed._io import AtomicFile
written = AtomicFile(sys.argv[1])
written.file.write(b"parent's")
written.file.flush()
pid = os.fork()
if pid == 0:  # the child drops its copy, as a forked process that exits normally would
    del written
    os._exit(0)
assert os.waitpid(pid, 0)[1] == 0
written.commit()
"""


def test_a_forked_childs_copy_does_not_delete_the_temporary(tmp_path):
    # In a fresh process: this one may have JAX's threads, which a fork does not copy.
    target = tmp_path / "t.bin"
    subprocess.run([sys.executable, "-c", _FORK_AND_DROP, str(target)], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert target.read_bytes() == b"parent's"


class _Signalled(Exception):
    pass


def _raise_signalled(signum, frame):
    raise _Signalled(signum)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_a_held_block_is_raised_at_its_end(sig):
    # Raised inside a fork, its exception would leave that worker out of the pool's list;
    # inside the deletion of a temporary, the temporary.
    before = signal.signal(sig, _raise_signalled)
    try:
        reached = []
        with pytest.raises(_Signalled), interrupts_held():
            signal.raise_signal(sig)
            reached.append("the end of the block")
        assert reached == ["the end of the block"]
        assert signal.getsignal(sig) is _raise_signalled
    finally:
        signal.signal(sig, before)
