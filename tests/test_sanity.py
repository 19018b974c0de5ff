"""Every sanity flag fires on a model (or numbers) broken for it and stays quiet on a normally
trained tiny model (or sound numbers)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.pipeline.analysis.result_flags import SweepPair, result_flags
from benchmark.pipeline.analysis.sanity import flag, large_eps, model_flags
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.protocol import load_protocol
from leaderboard.derive import aggregate
from leaderboard.flags import FLAG_DOCS, SANITY_FLAGS
from tests.helpers import tiny_standard_model

pytestmark = pytest.mark.unit

MODEL_FLAGS = ("stochastic_outputs", "probability_outputs", "zero_gradients", "not_chance_at_large_eps")
SETTINGS = load_protocol("mnist5k-cnn").analysis.sanity
PAIRS = [SweepPair("tpgd", ("tpgd-T0.5", "tpgd-T2"), "Temperature-PGD", "pgd", "PGD")]
EPS = ["0.05", "0.1", "0.2"]
N = 200


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
        assert set(f) == {"fired", "noted", "value", "threshold", "p_value", "detail"}
        assert isinstance(f["fired"], bool) and isinstance(f["detail"], str) and f["detail"]
        assert isinstance(f["value"], float) and isinstance(f["threshold"], float)
        assert math.isfinite(f["value"]) and math.isfinite(f["threshold"])
        assert f["noted"] or not f["fired"]
        if f["p_value"] is None:
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


def sound_flags(square: dict[str, int] | None = None, tpgd_extra: dict[str, int] | None = None,
                rise: bool = False):
    """Per-example flags of a sound evaluation on N points (robustness falling with eps, every
    attack breaking the same points), with `square[eps]` points broken by Square alone and
    `tpgd_extra[eps]` points broken by Temperature-PGD (T2) alone."""
    rng = np.random.default_rng(0)
    clean = rng.random(N) < 0.95
    robust = {e: clean & (rng.random(N) < p) for e, p in zip(EPS, (0.8, 0.6, 0.3))}
    for small, big in zip(EPS, EPS[1:]):
        robust[big] &= robust[small]
    flags = {"clean": clean}
    for e in EPS:
        aa = robust[e].copy()
        broken_by_square = np.zeros(N, bool)
        extra = np.flatnonzero(aa)[: (square or {}).get(e, 0)]
        aa[extra], broken_by_square[extra] = False, True
        flags[f"autoattack@{e}"] = aa
        flags[f"autoattack@{e}/square"] = broken_by_square
        for column in ("pgd", "tpgd-T0.5", "tpgd-T2"):
            flags[f"{column}@{e}"] = robust[e].copy()
        flags[f"tpgd-T2@{e}"][np.flatnonzero(robust[e])[: (tpgd_extra or {}).get(e, 0)]] = False
    if rise:
        flags["pgd@0.2"] = flags["pgd@0.1"].copy()
        flags["pgd@0.1"][np.flatnonzero(flags["pgd@0.1"])[:5]] = False
    return flags


def evaluate_flags(flags):
    labels = np.arange(N) % 10
    summary = aggregate({k: v for k, v in flags.items() if "/" not in k}, labels, EPS,
                        ["autoattack", "pgd", "tpgd-T0.5", "tpgd-T2"], {"tpgd": ["tpgd-T0.5", "tpgd-T2"]}, 10)
    return result_flags(flags, summary["robust_acc"], summary["worst_case"], EPS, [("autoattack", "square")], PAIRS,
                        SETTINGS)


def test_result_flags_quiet_on_sound_numbers():
    flags = evaluate_flags(sound_flags())
    assert tuple(flags) == ("square_beats_white_box", "accuracy_rises_with_eps", "tpgd_much_stronger_than_pgd")
    assert_well_formed(flags)
    assert not any(f["fired"] or f["noted"] for f in flags.values()), flags


def test_accuracy_rises_with_eps_fires_on_a_rise():
    flags = evaluate_flags(sound_flags(rise=True))["accuracy_rises_with_eps"]
    assert flags["fired"] and flags["value"] == pytest.approx(5 / N) and "pgd" in flags["detail"]


@pytest.mark.parametrize("extra, noted, fired", [(0, False, False), (6, True, False), (30, True, True)])
def test_tpgd_much_stronger_than_pgd_needs_a_large_gap_beyond_chance(extra, noted, fired):
    flags = evaluate_flags(sound_flags(tpgd_extra={"0.1": extra}))["tpgd_much_stronger_than_pgd"]
    assert (flags["noted"], flags["fired"]) == (noted, fired), flags
    assert flags["value"] == pytest.approx(extra / N)
    if extra:
        assert "0.1" in flags["detail"] and f"{extra} points only Temperature-PGD breaks" in flags["detail"]


@pytest.mark.parametrize("count, noted, fired", [(0, False, False), (1, True, False), (2, True, False),
                                                  (3, True, True), (10, True, True)])
def test_square_beats_white_box_is_a_note_for_one_point_and_a_flag_beyond_chance(count, noted, fired):
    """At 200 points against a 0.2% rate: 1 or 2 points are a note (p = 0.33, 0.06), 3 fire (p = 0.008)."""
    flags = evaluate_flags(sound_flags(square={"0.1": count}))["square_beats_white_box"]
    assert (flags["noted"], flags["fired"]) == (noted, fired), flags
    assert flags["p_value"] == pytest.approx(scipy.stats.binomtest(count, N, 0.002, alternative="greater").pvalue
                                             if count else 1.0)
    if count:
        assert f"Square broke {count} of {N} points the gradient attacks missed" in flags["detail"]


def test_skipped_result_flags_are_quiet():
    flags = sound_flags()
    summary = aggregate({k: v for k, v in flags.items() if "/" not in k}, np.arange(N) % 10, EPS, ["pgd"], {}, 10)
    quiet = result_flags(flags, summary["robust_acc"], summary["worst_case"], EPS, [], [], SETTINGS)
    for name in ("square_beats_white_box", "tpgd_much_stronger_than_pgd"):
        assert not quiet[name]["fired"] and not quiet[name]["noted"] and "skipped" in quiet[name]["detail"]


def test_names_docs_and_non_finite_values():
    names = set(evaluate_flags(sound_flags())) | set(MODEL_FLAGS)
    assert set(SANITY_FLAGS) == names and len(SANITY_FLAGS) == 7
    assert set(FLAG_DOCS) == names and all(FLAG_DOCS[n] for n in names)
    nan = flag(float("nan"), 0.0, "logits are NaN")
    assert nan["fired"] and math.isfinite(nan["value"])
