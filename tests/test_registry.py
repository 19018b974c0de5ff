"""The registry: strict names, helpful errors, lazy loading."""
import pytest

from benchmark.core.errors import AtbenchError
from benchmark.core.registry import (
    ATTACKS,
    DATASETS,
    DEFENSES,
    MODELS,
    TRACKS,
    Registry,
)

pytestmark = pytest.mark.unit


def test_duplicate_name_raises():
    reg = Registry("widget")
    reg.register(1, name="a")
    with pytest.raises(ValueError, match="already registered"):
        reg.register(2, name="a")


def test_unknown_name_lists_known_and_closest():
    reg = Registry("widget")
    reg.register(1, name="trades")
    reg.register(2, name="mart")
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


def test_one_style_names_come_from_the_object_once():
    reg = Registry("widget")

    @reg.register
    class Widget:
        name = "my-widget"

    @reg.register(name="built")
    def build():
        return 1

    assert reg.get("my-widget") is Widget and reg.get("built") is build


@pytest.mark.parametrize("name", ["Bad Name", "../x", "a_b", "", "x" * 65])
def test_names_must_be_slugs(name):
    with pytest.raises(AtbenchError, match="not allowed"):
        Registry("widget").register(1, name=name)
