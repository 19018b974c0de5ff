"""Names that become file names: defenses, external models, tracks, protocols.

A name is a slug: lowercase letters and digits, words joined by single hyphens, at most 64
characters (`pgd-at`, `cifar10-prn18-l2`). Names are checked where they are registered and on
every command-line argument, so no path built from one leaves its folder.
"""
from __future__ import annotations

import re
from pathlib import Path

from benchmark.core.errors import AtbenchError

SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_LENGTH = 64
RULE = "lowercase letters, digits and single hyphens between them (e.g. pgd-at), at most 64 characters"


def is_slug(name: object) -> bool:
    """Whether `name` is a valid atbench name."""
    return isinstance(name, str) and len(name) <= MAX_LENGTH and SLUG.fullmatch(name) is not None


def check_name(name: object, kind: str) -> str:
    """Return `name` if it is a slug.

    Raises:
        AtbenchError: naming `kind` ("defense", "track", ...) and the rule.
    """
    if not is_slug(name):
        shown = name if isinstance(name, str) and len(name) <= 80 else f"{str(name)[:80]}..."
        raise AtbenchError(f"{kind} name {shown!r} is not allowed: names must be {RULE}",
                           f"use a {kind} name such as 'my-{kind}-v2'")
    return name


def inside(root: Path, relative: Path) -> Path:
    """`root / relative`, refused if it would resolve outside `root` (an absolute `relative`,
    `..` parts or a link leading out).

    Raises:
        AtbenchError: the path leaves its root folder.
    """
    path = root / relative
    resolved_root = root.resolve()
    if relative.is_absolute() or not path.resolve().is_relative_to(resolved_root):
        raise AtbenchError(f"path {relative} leaves its folder {root}", "use plain names, without '/' or '..'")
    return path
