"""Whether a path can be made and written, judged before any work: no name in it longer than
the file system allows, no plain file among its parents, and a folder that takes new files where
the path (or its first missing part) would be made. The command-line types
(`benchmark.commands.arguments`) refuse a write path with the reason found here, so a long job
never ends by failing to write its results."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: The longest file or folder name, in bytes, of the common file systems (ext4, xfs, btrfs, tmpfs).
NAME_MAX = 255


def shown(text: str) -> str:
    """`text` shortened to at most 240 characters for a message (a real path is shown whole)."""
    return text if len(text) <= 240 else f"{text[:200]}...{text[-37:]}"


def name_problem(text: str) -> str | None:
    """Why the path `text` cannot exist anywhere (a name longer than `NAME_MAX` bytes), or None."""
    long = next((part for part in Path(text).parts if len(os.fsencode(part)) > NAME_MAX), None)
    if long is None:
        return None
    return f"the name {shown(long)} in it is {len(os.fsencode(long))} bytes long; the file system allows {NAME_MAX}"


def write_problem(text: str) -> str | None:
    """Why the path `text` cannot be made or written, or None: a name too long (`name_problem`),
    a plain file (or anything but a folder) where one of its parents should be a folder, or a
    folder that takes no new file where the path (or its first missing part) would be made: the
    only thing it writes is one empty temporary file there, removed at once. An existing folder
    is not probed (a folder that is only read may be read-only). Never raises."""
    problem = name_problem(text)
    if problem is not None:
        return problem
    path = Path(text)
    for parent in reversed(path.parents):
        if os.path.lexists(parent) and not os.path.isdir(parent):
            return f"{shown(str(parent))} is a file, not a folder"
    if os.path.isdir(path):
        return None
    nearest = next((p for p in path.parents if os.path.isdir(p)), Path("."))
    try:
        fd, probe = tempfile.mkstemp(dir=nearest, prefix=".atbench-probe-")
    except OSError as exc:
        return f"the folder {shown(str(nearest))} takes no new file ({exc.strerror})"
    os.close(fd)
    os.unlink(probe)
    return None
