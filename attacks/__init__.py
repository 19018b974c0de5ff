"""Attacks: importing this package registers every attack in `benchmark.registry.ATTACKS`."""
from attacks.autoattack import AutoAttackAdapter
from attacks.base import Attack, AttackConfig
from attacks.cw import CW
from attacks.pgd import PGD, ExampleNoise, pgd_train_examples, random_start, sign_ascent
from attacks.temperature_pgd import TemperaturePGD

__all__ = [
    "Attack",
    "AttackConfig",
    "AutoAttackAdapter",
    "CW",
    "ExampleNoise",
    "PGD",
    "TemperaturePGD",
    "pgd_train_examples",
    "random_start",
    "sign_ascent",
]
