import pytest

from flax_embed._io import AtomicFile, atomic_open, atomic_path


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
