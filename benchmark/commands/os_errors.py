"""The one mapping of operating-system errors to user errors, applied where commands start
(`cli.main`): an OSError that names a path and has a cause the user can fix (a plain file where
a folder should be, a name too long, no permission, a full or read-only disk, ...) becomes one
`AtbenchError` naming the path and the fix. Every other exception is left to raise: it is a bug.

Also: a reader of stdout that leaves early (`atbench compare A B | head`) ends the command
quietly (`silence_stdout`)."""
from __future__ import annotations

import errno
import os
import sys

from benchmark.core.errors import AtbenchError
from benchmark.core.writable import shown

#: errno -> the fix, for the OS errors a user causes and can fix.
FIXES = {
    errno.ENOTDIR: "a part of the path that should be a folder is a file: pass a path under a folder",
    errno.EEXIST: "a file is in the way of a folder the command makes: move it or pass another path",
    errno.EISDIR: "the path is a folder where a file is needed: pass a file path",
    errno.ENAMETOOLONG: "use shorter file and folder names (at most 255 bytes each)",
    errno.EACCES: "pass a path you may write (or read), or change its permissions",
    errno.EPERM: "pass a path you may write (or read), or change its permissions",
    errno.EROFS: "the file system is read-only: pass a path on a writable one",
    errno.ELOOP: "the path has a loop of symbolic links: pass the real path",
    errno.ENOSPC: "the disk is full: free space or pass a path on another disk",
    errno.EDQUOT: "the disk quota is used up: free space or pass a path on another disk",
}


def user_error(exc: OSError, kept: str = "") -> AtbenchError | None:
    """The user error `exc` stands for, or None when it is not one (no path named, or a cause
    that is not in `FIXES`). `kept` says where the finished work is, when there is some."""
    if exc.filename is None or exc.errno not in FIXES:
        return None
    names = " -> ".join(shown(os.fsdecode(f)) for f in (exc.filename, exc.filename2) if f is not None)
    problem = f"cannot use {names}: {exc.strerror or os.strerror(exc.errno)}"
    return AtbenchError(f"{problem}; {kept}" if kept else problem, FIXES[exc.errno])


def silence_stdout() -> None:
    """Point stdout at /dev/null after its reader left, so the interpreter's last flush does not
    fail again (the recipe of Python's `signal` documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (captured in-process)
        pass
    finally:
        os.close(devnull)
