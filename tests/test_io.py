"""Atomic writes: the file appears whole or not at all, and with the permissions `open()` gives
(boards and records are served and read by others, so not mkstemp's owner-only 0o600)."""
from __future__ import annotations

import os
import stat

import pytest

from benchmark.core import io
from benchmark.core.io import atomic_write_bytes

pytestmark = pytest.mark.unit


def test_a_written_file_has_the_permissions_open_gives_and_replaces_the_old_one(tmp_path):
    path = tmp_path / "sub" / "board.html"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second")
    (tmp_path / "plain").write_bytes(b"")
    assert path.read_bytes() == b"second"
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert os.listdir(path.parent) == ["board.html"]


def test_reading_the_umask_leaves_it_unchanged():
    old = os.umask(0o027)
    try:
        assert io._process_umask() == 0o027 and io._process_umask() == 0o027
    finally:
        os.umask(old)


def test_a_failed_write_leaves_neither_a_file_nor_a_temporary_one(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "record.json", object())  # not bytes: the write fails inside
    assert os.listdir(tmp_path) == []
