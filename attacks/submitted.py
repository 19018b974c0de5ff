"""Submitted attacks: attacks that run beside the fixed protocol (`atbench attack`), never in it.

A submitted attack has the protocol attacks' interface (`attacks.base.Attack`: a frozen `Config`
deriving from `AttackConfig`, and `perturb`) and registers with `@register` in the
SUBMITTED_ATTACKS registry: atbench's own adaptive attacks live in `attacks/adaptive/`, a user's
come from a file (`--attack-file F.py`) or an installed package (entry-point group
`atbench.attacks`, entry-point name = the attack's `name`). Its name may not be a protocol
attack's, so a record never leaves open which of the two a name means.
"""
from __future__ import annotations

from benchmark.core.registry import ATTACKS, SUBMITTED_ATTACKS, NameTakenError


def register(cls: type) -> type:
    """Class decorator: register an `attacks.base.Attack` subclass under its `name` as a
    submitted attack.

    Raises:
        NameTakenError: the name is a protocol attack's or another submitted attack's.
    """
    name = getattr(cls, "name", None)
    if name in ATTACKS:
        raise NameTakenError(f"attack {name!r} is the name of one of the protocol's attacks")
    return SUBMITTED_ATTACKS.register(cls)
