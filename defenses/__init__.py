"""Defenses: one file per defense, each registered under a stable id in DEFENSES."""
from defenses import classwise_at, crm_liplt, dyart, mart, pgd_at, rat, sovr, standard, trades  # noqa: F401  (registers them)
from defenses.base import Defense, DefenseMeta, TrainContext, register

__all__ = ["Defense", "DefenseMeta", "TrainContext", "register"]
