"""Defenses: one file per defense, each registered under a stable id in DEFENSES."""
from defenses import mart, pgd_at, standard, trades  # noqa: F401  (imported to register)
from defenses.base import Defense, DefenseMeta, TrainContext, register

__all__ = ["Defense", "DefenseMeta", "TrainContext", "register"]
