"""Defenses: one file per defense, each registering itself with `@register` (defenses.base).

The DEFENSES registry imports every module of this package on its first lookup, so a new file
here is registered with no list to edit.
"""
from defenses.base import Defense, DefenseMeta, TrainContext, register

__all__ = ["Defense", "DefenseMeta", "TrainContext", "register"]
