"""A ``.bin`` and its sidecar: a half-written pair is told from a corrupt one (issue 12, case 5)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flax_embed.data import TokenFileError, read_token_file, write_token_file
from flax_embed.data.token_files import sidecar_path

IDS = np.arange(10)


@pytest.fixture
def pair(tmp_path):
    path = tmp_path / "t.bin"
    write_token_file(path, IDS)
    return path


def _edit_sidecar(path, **changes):
    sidecar = sidecar_path(path)
    meta = json.loads(sidecar.read_text())
    meta.update(changes)
    sidecar.write_text(json.dumps(meta))


def test_a_sidecar_marked_incomplete_is_a_half_written_pair(pair, monkeypatch):
    monkeypatch.setattr("flax_embed.data.token_files.PAIR_WAIT", 0.05)
    _edit_sidecar(pair, complete=False)
    with pytest.raises(TokenFileError, match=r"half-written pair: .* interrupted"):
        read_token_file(pair)
    pair.unlink()  # the first write of a file, interrupted before the data was renamed
    with pytest.raises(TokenFileError, match="half-written pair"):
        read_token_file(pair)


def test_data_that_differs_from_a_complete_sidecar_is_corrupt(pair):
    data = bytearray(pair.read_bytes())
    data[0] ^= 1  # same size, different bytes
    pair.write_bytes(bytes(data))
    with pytest.raises(TokenFileError, match="corrupt: its CRC-32"):
        read_token_file(pair)
    assert read_token_file(pair, check_ids=False).shape == (10,)  # only the size is checked
    pair.write_bytes(bytes(data[:-2]))
    with pytest.raises(TokenFileError, match="corrupt: truncated"):
        read_token_file(pair, check_ids=False)


def test_a_sidecar_disagreeing_with_itself_is_corrupt(pair):
    _edit_sidecar(pair, bytes=3)
    with pytest.raises(TokenFileError, match="disagrees with itself"):
        read_token_file(pair)


def test_data_without_its_sidecar_and_sidecar_without_its_data(pair):
    sidecar = sidecar_path(pair)
    saved = sidecar.read_bytes()
    sidecar.unlink()
    with pytest.raises(TokenFileError, match=r"never leaves a \.bin without one"):
        read_token_file(pair)
    sidecar.write_bytes(saved)
    pair.unlink()
    with pytest.raises(TokenFileError, match="no such file, but its sidecar"):
        read_token_file(pair)


def test_older_sidecars_without_the_new_keys_still_read(pair):
    sidecar = sidecar_path(pair)
    meta = json.loads(sidecar.read_text())
    for key in ("bytes", "crc32", "complete"):
        del meta[key]
    sidecar.write_text(json.dumps(meta))
    np.testing.assert_array_equal(read_token_file(pair), IDS)


def test_a_sidecar_that_is_a_directory_is_named_when_reading(tmp_path):
    path = tmp_path / "t.bin"
    path.write_bytes(b"\0\0")
    sidecar_path(path).mkdir()
    with pytest.raises(IsADirectoryError) as raised:
        read_token_file(path)
    assert raised.value.filename == str(sidecar_path(path))
