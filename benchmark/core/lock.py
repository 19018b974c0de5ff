"""An exclusive lock on a folder atbench writes into, so two processes never work on the same
runs (or records) folder at once.

The lock is an `fcntl.flock` on `<folder>/.atbench.lock`: the kernel releases it when its holder
exits, however it exits (`kill -9` included), so a lock never goes stale. The file names its
holder (pid, command, start time) for the message the waiting process prints.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from benchmark.core.errors import AtbenchError
from benchmark.core.workspace import inside_installed_tree

log = logging.getLogger(__name__)
LOCK_NAME = ".atbench.lock"
#: Seconds between attempts while waiting for the holder (short, so Ctrl-C stops the wait at once).
POLL_SECONDS = 0.2
#: Lock files this process holds: taking one again (the records folder inside the runs folder's
#: lock, or the same folder passed as both) is a no-op rather than a wait on itself.
_held: set[Path] = set()


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']}: {info['command']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another atbench process"


@contextlib.contextmanager
def folder_lock(folder: str | Path, wait: bool = True, shared: bool = False) -> Iterator[None]:
    """Hold the lock of `folder` (created if missing) for the `with` block.

    When another process holds it: with `wait`, log who holds it and wait until it is free;
    without, raise. With `shared` (a reader: building a board from the folder), the lock is
    shared with other readers and only waits for a writer; a folder inside the installed package
    (its shipped records, in a venv of your own too), one this user cannot write into (a read-only
    mount), or one that does not exist is read without a lock and without creating anything in
    it (a publisher that `--records-dir` points into the installed package is not waited for).

    Raises:
        AtbenchError: the folder is locked and `wait` is False.
    """
    folder = Path(folder)
    if shared and (not (folder.is_dir() and os.access(folder, os.W_OK)) or inside_installed_tree(folder)):
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / LOCK_NAME).resolve()
    if path in _held:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        announced = False
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(path)
                if not wait:
                    raise AtbenchError(f"{folder} is in use by another atbench process ({holder})",
                                       "wait for it to finish (without --no-wait, atbench waits by itself), or use "
                                       "another folder; a killed process frees its folders by itself") from None
                if not announced:
                    log.warning("%s is in use by another atbench process (%s); waiting for it to finish",
                                folder, holder)
                    announced = True
                time.sleep(POLL_SECONDS)
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": " ".join(["atbench", *sys.argv[1:]]),
                                  "since": since}).encode(), 0)
        _held.add(path)
        try:
            yield
        finally:
            _held.discard(path)
    finally:
        os.close(fd)  # releases the lock
