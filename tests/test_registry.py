"""The registry: strict names, helpful errors, lazy loading."""
import pytest

from benchmark.errors import AtbenchError
from benchmark.registry import ATTACKS, DATASETS, DEFENSES, MODELS, TRACKS, Registry


def test_duplicate_name_raises():
    reg = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", 2)


def test_unknown_name_lists_known_and_closest():
    reg = Registry("widget")
    reg.add("trades", 1)
    reg.add("mart", 2)
    with pytest.raises(AtbenchError) as info:
        reg.get("trade")
    assert "unknown widget 'trade'" in info.value.problem
    assert "did you mean 'trades'" in info.value.fix
    assert "mart" in info.value.fix


@pytest.mark.parametrize("registry,expected", [
    (DEFENSES, {"standard", "pgd-at", "trades", "mart"}),
    (ATTACKS, {"pgd", "cw", "tpgd", "autoattack"}),
    (DATASETS, {"mnist5k", "digits", "cifar10", "cifar100", "svhn", "synthetic"}),
    (MODELS, {"cnn-mnist", "cnn-cifar", "preact-resnet18", "wrn-34-10", "wrn-28-10"}),
    (TRACKS, {"mnist5k-cnn", "cifar10-prn18"}),
])
def test_registries_load_lazily_and_hold_the_shipped_entries(registry, expected):
    assert expected <= set(registry.names())
