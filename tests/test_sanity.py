"""Every sanity flag fires on a model (or numbers) broken for it and stays quiet on a normally
trained tiny model (or sound numbers)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.protocol import load_protocol
from benchmark.pipeline.sanity import SweepPair, flag, large_eps, model_flags
from benchmark.pipeline.sanity import result_flags as _result_flags
from leaderboard.flags import FLAG_DOCS, SANITY_FLAGS
from tests.helpers import tiny_standard_model

MODEL_FLAGS = ("stochastic_outputs", "probability_outputs", "zero_gradients", "not_chance_at_large_eps")
SETTINGS = load_protocol("mnist5k-cnn").analysis.sanity
PAIRS = [SweepPair("tpgd", "Temperature-PGD", "pgd", "PGD")]


def result_flags(robust, worst, eps, square):
    """The result flags as the evaluation calls them, with the shipped thresholds."""
    return _result_flags(robust, worst, eps, square, "Square", PAIRS if "tpgd" in robust else [], SETTINGS)


EPS = ["0.05", "0.1", "0.2"]


class Wrapped(nn.Module):
    """The tiny model behind an input transform and/or followed by an output transform."""

    def __init__(self, model: nn.Module, before=lambda x: x, after=lambda z: z):
        super().__init__()
        self.model, self.before, self.after = model, before, after

    def forward(self, x):
        return self.after(self.model(self.before(x)))


class Constant(nn.Module):
    """Ignores its input (zero gradient) and always predicts class `label`."""

    def __init__(self, label: int, num_classes: int = 10):
        super().__init__()
        self.register_buffer("logits", 10 * F.one_hot(torch.tensor(label), num_classes).float())

    def forward(self, x):
        return self.logits + 0 * x.flatten(1)[:, :1]


@pytest.fixture(scope="module")
def data():
    bundle = load_dataset("synthetic")
    return bundle.test.x, bundle.test.y


@pytest.fixture(scope="module")
def model():
    return tiny_standard_model()


def flags_of(net, data, norm="Linf"):
    x, y = data
    return model_flags(net, x, y, norm=norm, num_classes=10, device="cpu", settings=SETTINGS)


def assert_well_formed(flags):
    for name, f in flags.items():
        assert name in SANITY_FLAGS
        assert set(f) == {"fired", "value", "threshold", "detail"}
        assert isinstance(f["fired"], bool) and isinstance(f["detail"], str) and f["detail"]
        assert isinstance(f["value"], float) and isinstance(f["threshold"], float)
        assert math.isfinite(f["value"]) and math.isfinite(f["threshold"])
        assert f["fired"] == (f["value"] > f["threshold"])


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_model_flags_quiet_on_a_normal_model(model, data, norm):
    flags = flags_of(model, data, norm)
    assert tuple(flags) == MODEL_FLAGS
    assert_well_formed(flags)
    assert not any(f["fired"] for f in flags.values()), flags
    assert flags["not_chance_at_large_eps"]["threshold"] == pytest.approx(0.2)


@pytest.mark.parametrize("name, broken", [
    ("probability_outputs", lambda m: Wrapped(m, after=lambda z: z.softmax(dim=1))),
    ("stochastic_outputs", lambda m: Wrapped(m, before=lambda x: F.dropout(x, 0.2, training=True).clamp(0, 1))),
    ("stochastic_outputs", lambda m: Wrapped(m, after=lambda z: z + 0.01 * torch.randn_like(z))),
    ("zero_gradients", lambda m: Wrapped(m, before=lambda x: torch.floor(x * 2) / 2)),
    ("zero_gradients", lambda m: Wrapped(m, before=torch.round)),
])
def test_model_flag_fires_on_a_model_broken_for_it(model, data, name, broken):
    flags = flags_of(broken(model).eval(), data)
    assert_well_formed(flags)
    assert flags[name]["fired"], flags[name]


def test_not_chance_fires_on_a_model_that_stays_robust_at_a_huge_eps(model, data):
    x, y = data
    one_class = (x[y == 3], y[y == 3])
    flags = flags_of(Constant(3), one_class)
    assert flags["not_chance_at_large_eps"]["fired"] and flags["not_chance_at_large_eps"]["value"] == 1.0
    assert flags["zero_gradients"]["fired"]  # its output ignores the input
    assert not flags_of(model, one_class)["not_chance_at_large_eps"]["fired"]


def test_large_eps_reaches_the_constant_half_image():
    x = torch.zeros(2, 3, 4, 4)
    assert large_eps("Linf", x, 0.5) == 0.5
    assert large_eps("L2", x, 0.5) == pytest.approx((0.5 - x[0]).norm().item())


def test_model_flags_leave_model_and_random_streams_alone(model, data):
    x, y = data
    net = Wrapped(copy.deepcopy(model), after=lambda z: z + 0.01 * torch.randn_like(z)).train()
    state = torch.random.get_rng_state()
    first = flags_of(net, (x, y))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(m.training for m in net.modules())
    assert all(p.requires_grad for p in net.parameters())
    assert flags_of(net, (x, y)) == first  # seeded inside: reproducible


def sound_numbers():
    robust = {"pgd": dict(zip(EPS, [0.6, 0.4, 0.1])), "tpgd": dict(zip(EPS, [0.58, 0.39, 0.1])),
              "tpgd-T0.5": dict(zip(EPS, [0.6, 0.4, 0.1]))}
    return robust, dict(zip(EPS, [0.55, 0.35, 0.05]))


def test_result_flags_quiet_on_sound_numbers():
    robust, worst = sound_numbers()
    flags = result_flags(robust, worst, EPS, dict(zip(EPS, [0.0, 0.001, 0.002])))
    assert tuple(flags) == ("square_beats_white_box", "accuracy_rises_with_eps", "tpgd_much_stronger_than_pgd")
    assert_well_formed(flags)
    assert not any(f["fired"] for f in flags.values()), flags
    assert flags["accuracy_rises_with_eps"]["value"] == 0.0


def test_accuracy_rises_with_eps_fires_on_a_rise():
    robust, worst = sound_numbers()
    robust["pgd"]["0.2"] = 0.45
    flags = result_flags(robust, worst, EPS, None)
    assert flags["accuracy_rises_with_eps"]["fired"]
    assert flags["accuracy_rises_with_eps"]["value"] == pytest.approx(0.05)
    assert "pgd" in flags["accuracy_rises_with_eps"]["detail"]
    robust, worst = sound_numbers()
    worst["0.1"] = 0.6
    assert result_flags(robust, worst, EPS, None)["accuracy_rises_with_eps"]["value"] == pytest.approx(0.05)
    # consecutive eps follow the given order, not the dicts' order
    assert result_flags(*sound_numbers(), list(reversed(EPS)), None)["accuracy_rises_with_eps"]["fired"]


def test_tpgd_much_stronger_than_pgd():
    robust, worst = sound_numbers()
    robust["tpgd"]["0.1"] = 0.3
    flags = result_flags(robust, worst, EPS, None)["tpgd_much_stronger_than_pgd"]
    assert flags["fired"] and flags["value"] == pytest.approx(0.1) and "0.1" in flags["detail"]
    del robust["tpgd"]
    skipped = result_flags(robust, worst, EPS, None)["tpgd_much_stronger_than_pgd"]
    assert not skipped["fired"] and skipped["value"] == 0.0 and "skipped" in skipped["detail"]


def test_square_beats_white_box():
    robust, worst = sound_numbers()
    flags = result_flags(robust, worst, EPS, dict(zip(EPS, [0.0, 0.01, 0.004])))["square_beats_white_box"]
    assert flags["fired"] and flags["value"] == 0.01 and flags["threshold"] == 0.002 and "0.1" in flags["detail"]
    skipped = result_flags(robust, worst, EPS, None)["square_beats_white_box"]
    assert not skipped["fired"] and skipped["value"] == 0.0


def test_names_docs_and_non_finite_values():
    robust, worst = sound_numbers()
    names = set(result_flags(robust, worst, EPS, None)) | set(MODEL_FLAGS)
    assert set(SANITY_FLAGS) == names and len(SANITY_FLAGS) == 7
    assert set(FLAG_DOCS) == names and all(FLAG_DOCS[n] for n in names)
    nan = flag(float("nan"), 0.0, "logits are NaN")
    assert nan["fired"] and math.isfinite(nan["value"])
