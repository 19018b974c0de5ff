"""Attacks: one file per attack, each registering itself with `@ATTACKS.register`.

The ATTACKS registry imports every module of this package on its first lookup, so a new file
here is registered with no list to edit.
"""
from attacks.base import Attack, AttackConfig

__all__ = ["Attack", "AttackConfig"]
