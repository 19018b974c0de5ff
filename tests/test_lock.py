"""The folder lock: a second process waits or stops with a clear message, a killed holder frees
the folder, one process may take the same lock twice, readers share it, and a folder nobody here
can write into is read without one."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from benchmark.core.errors import AtbenchError
from benchmark.core.lock import LOCK_NAME, folder_lock

pytestmark = pytest.mark.system

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from benchmark.core.lock import folder_lock
    folder, seconds, released, shared = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "shared"
    with folder_lock(folder, shared=shared):
        Path(folder, "held").write_text("yes")
        time.sleep(seconds)
        released.write_text("released")
""")


def hold(folder, seconds, tmp_path, shared=False):
    """A process holding `folder`'s lock (shared: as a reader) for `seconds`, started and holding
    when this returns."""
    released = tmp_path / "released"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), str(seconds), str(released),
                             "shared" if shared else "exclusive"])
    deadline = time.monotonic() + 60
    while not (folder / "held").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, "the holder did not start"
        time.sleep(0.05)
    return proc, released


def test_a_second_process_stops_with_a_message_naming_the_holder(tmp_path):
    folder = tmp_path / "runs"
    proc, _ = hold(folder, 30, tmp_path)
    try:
        with pytest.raises(AtbenchError) as info:
            with folder_lock(folder, wait=False):
                pass
        assert f"{folder} is in use by another atbench process (pid {proc.pid}" in info.value.problem
        assert "a killed process frees its folders" in info.value.fix
    finally:
        proc.kill()
        proc.wait()


def test_a_waiting_process_gets_the_lock_only_after_the_holder_released_it(tmp_path, caplog):
    folder = tmp_path / "runs"
    proc, released = hold(folder, 1.5, tmp_path)
    with folder_lock(folder):
        assert released.read_text() == "released"
    assert proc.wait() == 0
    assert "is in use by another atbench process" in caplog.text and "waiting for it to finish" in caplog.text


def test_a_killed_holder_frees_the_folder(tmp_path):
    folder = tmp_path / "runs"
    proc, released = hold(folder, 60, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with folder_lock(folder, wait=False):
        info = json.loads((folder / LOCK_NAME).read_text())
    assert info["pid"] == os.getpid() and not released.exists()


def test_the_same_process_may_take_a_lock_it_holds(tmp_path):
    other = [sys.executable, "-c", f"from benchmark.core.lock import folder_lock\nwith folder_lock({str(tmp_path)!r}, "
             "wait=False): pass"]
    with folder_lock(tmp_path):
        with folder_lock(tmp_path, wait=False):
            pass
        refused = subprocess.run(other, capture_output=True, text=True)  # still held after the inner block
        assert refused.returncode != 0 and "is in use by another atbench process" in refused.stderr
    assert subprocess.run(other).returncode == 0


def test_readers_share_the_lock_and_a_writer_waits_for_them(tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    proc, _ = hold(folder, 30, tmp_path, shared=True)
    try:
        with folder_lock(folder, wait=False, shared=True):
            pass  # a second reader is not refused
        with pytest.raises(AtbenchError, match="is in use by another atbench process"):
            with folder_lock(folder, wait=False):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_a_reader_waits_for_a_writer(tmp_path):
    folder = tmp_path / "records"
    proc, _ = hold(folder, 30, tmp_path)
    try:
        with pytest.raises(AtbenchError, match="is in use by another atbench process"):
            with folder_lock(folder, wait=False, shared=True):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_a_reader_creates_nothing_in_a_folder_it_cannot_write_or_that_is_missing(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-records"
    with folder_lock(missing, shared=True):
        pass
    assert not missing.exists()
    installed = tmp_path / "site-packages" / "records"
    installed.mkdir(parents=True)
    monkeypatch.setattr("benchmark.core.lock.os.access", lambda path, mode: False)  # as for a non-root user
    with folder_lock(installed, shared=True):
        pass
    assert list(installed.iterdir()) == []


def test_a_reader_creates_nothing_inside_the_installed_package_even_where_it_may_write(tmp_path, monkeypatch):
    from benchmark.core import workspace

    site = tmp_path / "site-packages"
    records = site / "leaderboard" / "records" / "smoke"
    records.mkdir(parents=True)
    monkeypatch.setattr(workspace, "package_root", lambda: site)  # an installed wheel: no pyproject.toml
    with folder_lock(records, shared=True):
        pass
    assert list(records.iterdir()) == []
    (site / "pyproject.toml").write_text("")  # a checkout: its committed records are locked as any folder
    with folder_lock(records, shared=True):
        assert (records / LOCK_NAME).is_file()
