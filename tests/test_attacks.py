"""Property tests for every registered attack and for the shared PGD core, on a tiny MLP
trained for a few steps on synthetic 1x8x8 images (10 classes), so attacks partly succeed."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attacks.cw import margin
from attacks.pgd import PGD, ExampleNoise, pgd_train_examples, random_start, sign_ascent
from attacks.temperature_pgd import TemperaturePGD
from benchmark.core.errors import AtbenchError
from benchmark.core.registry import ATTACKS
from tests.helpers import tiny_mlp

pytestmark = pytest.mark.unit

NAMES = ATTACKS.names()
GRADIENT = [n for n in NAMES if issubclass(ATTACKS.get(n), PGD)]
EPS = {"Linf": 0.05, "L2": 0.5}  # the tiny model is partly robust at these
EPS_RANGE = {"Linf": st.floats(0.0, 0.5), "L2": st.floats(0.0, 4.0)}
SLOW = {"autoattack"}  # a few seconds per call even on the tiny model


@pytest.fixture(scope="module")
def tiny():
    return tiny_mlp()


def robust(model, x_adv, y):
    with torch.no_grad():
        return model(x_adv).argmax(dim=1) == y


def build(name, **kwargs):
    """The attack with its default config updated by `kwargs`, or None when the attack does
    not take these settings (e.g. a norm it does not support)."""
    try:
        return ATTACKS.get(name)(**kwargs)
    except AtbenchError:
        return None


def for_eps(name, norm, check):
    """Run `check(eps)` on hypothesis-drawn eps values (fewer for slow attacks)."""

    @settings(max_examples=2 if name in SLOW else 12, deadline=None, derandomize=True, database=None)
    @given(eps=EPS_RANGE[norm])
    def run(eps):
        check(eps)

    run()


# -- every registered attack -------------------------------------------------------------


@pytest.mark.parametrize("norm", ["Linf", "L2"])
@pytest.mark.parametrize("name", NAMES)
def test_stays_in_ball_and_unit_interval(tiny, name, norm):
    model, x, y = tiny
    attack = build(name, norm=norm)
    if attack is None:
        pytest.skip(f"{name} does not support {norm}")
    x, y = x[:16], y[:16]

    def check(eps):
        x_adv = attack(model, x, y, eps)
        assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad
        delta = (x_adv - x).flatten(1)
        dist = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
        assert dist.max().item() <= eps + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1

    for_eps(name, norm, check)


@pytest.mark.parametrize("name", NAMES)
def test_leaves_the_model_and_global_rng_untouched(tiny, name):
    model, x, y = tiny
    model.train()
    model[1].weight.requires_grad_(False)  # a frozen layer must stay frozen
    flags = {p: p.requires_grad for p in model.parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    try:
        ATTACKS.get(name)()(model, x[:8], y[:8], EPS["Linf"])
        assert all(m.training for m in model.modules())
        assert {p: p.requires_grad for p in model.parameters()} == flags
        assert all(p.grad is None for p in model.parameters())
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BN stats too
        assert torch.equal(torch.get_rng_state(), rng)
    finally:
        model[1].weight.requires_grad_(True)
        model.eval()


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_and_never_above_clean_accuracy(tiny, name):
    model, x, y = tiny
    n = 8 if name in SLOW else len(x)
    x, y = x[:n], y[:n]
    attack = ATTACKS.get(name)(seed=3)
    torch.manual_seed(1)
    first = attack(model, x, y, EPS["Linf"])
    torch.manual_seed(2)  # the global generator plays no part
    assert torch.equal(attack(model, x, y, EPS["Linf"]), first)
    # point-wise: a point misclassified when clean is misclassified under attack
    assert not (robust(model, first, y) & ~robust(model, x, y)).any()


@pytest.mark.parametrize("name", NAMES)
def test_rejects_inputs_outside_unit_interval(tiny, name):
    model, x, y = tiny
    for bad in (x[:4] + 1.0, x[:4] - 1.0):
        with pytest.raises(AtbenchError, match=r"outside \[0, 1\]"):
            ATTACKS.get(name)()(model, bad, y[:4], EPS["Linf"])


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch(tiny, name):
    model, x, y = tiny
    assert ATTACKS.get(name)()(model, x[:0], y[:0], EPS["Linf"]).shape == x[:0].shape


@pytest.mark.parametrize("name", NAMES)
def test_bad_settings_raise(name):
    with pytest.raises(AtbenchError, match="norm"):
        ATTACKS.get(name)(norm="L0")
    with pytest.raises(TypeError):
        ATTACKS.get(name)(ATTACKS.get(name).Config(), seed=1)


@pytest.mark.parametrize(
    "name, kwargs",
    [("pgd", {"steps": -1}), ("pgd", {"restarts": 0}), ("pgd", {"step_ratio": 0.0}), ("cw", {"kappa": -1.0}),
     ("tpgd", {"temperature": 0.0}), ("autoattack", {"version": "fast"}), ("autoattack", {"seed": None}),
     ("autoattack", {"batch_size": 0})],
)
def test_bad_config_values_raise(name, kwargs):
    with pytest.raises(AtbenchError):
        ATTACKS.get(name)(**kwargs)


# -- the PGD family: monotonicity, Temperature-PGD at T = 1, CW -----------------------------


@pytest.mark.parametrize("norm", ["Linf", "L2"])
@pytest.mark.parametrize("name", GRADIENT)
def test_more_steps_never_leave_more_points_robust(tiny, name, norm):
    model, x, y = tiny
    for restarts in (1, 2):
        flags = [
            robust(model, ATTACKS.get(name)(steps=s, restarts=restarts, norm=norm)(model, x, y, EPS[norm]), y)
            for s in (0, 1, 2, 3, 5, 8, 20)
        ]
        for fewer, more in zip(flags, flags[1:]):
            assert not (more & ~fewer).any()
        assert flags[-1].sum() < flags[0].sum()  # the attack does something


@pytest.mark.parametrize("norm", ["Linf", "L2"])
@pytest.mark.parametrize("name", GRADIENT)
def test_more_restarts_never_leave_more_points_robust(tiny, name, norm):
    model, x, y = tiny
    flags = [
        robust(model, ATTACKS.get(name)(steps=2, restarts=r, norm=norm)(model, x, y, EPS[norm]), y)
        for r in (1, 2, 3, 5, 8)
    ]
    for fewer, more in zip(flags, flags[1:]):
        assert not (more & ~fewer).any()
    assert flags[-1].sum() < flags[0].sum()


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_temperature_one_is_pgd(tiny, norm):
    model, x, y = tiny
    pgd = PGD(steps=10, restarts=2, seed=5, norm=norm)(model, x, y, EPS[norm])
    tpgd = TemperaturePGD(temperature=1.0, steps=10, restarts=2, seed=5, norm=norm)(model, x, y, EPS[norm])
    assert torch.equal(pgd, tpgd)
    other = TemperaturePGD(temperature=0.5, steps=10, restarts=2, seed=5, norm=norm)(model, x, y, EPS[norm])
    assert not torch.equal(pgd, other)


def test_cw_breaks_points_and_most_of_them_at_a_large_eps(tiny):
    model, x, y = tiny
    clean = robust(model, x, y)
    small = robust(model, ATTACKS.get("cw")(steps=20)(model, x, y, EPS["Linf"]), y)
    assert not (small & ~clean).any() and small.sum() < clean.sum()
    large = robust(model, ATTACKS.get("cw")(steps=20)(model, x, y, 0.3), y)
    assert large.float().mean() < 0.1


def test_margin():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 5.0]])
    assert torch.equal(margin(logits, torch.tensor([0, 2])), torch.tensor([1.0, 0.0]))


# -- the functional core -------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_example_noise_depends_on_the_example_not_the_batch(norm):
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    order = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    whole, shuffled, alone = ExampleNoise(x, 3), ExampleNoise(x[order], 3), ExampleNoise(x[5:6], 3)
    first = whole.offsets(norm)
    assert torch.equal(shuffled.offsets(norm), first[order])
    assert torch.equal(alone.offsets(norm), first[5:6])
    second = whole.offsets(norm)  # the next restart's draw differs from the first
    assert not torch.equal(second, first)
    size = first.flatten(1).abs().amax(1) if norm == "Linf" else first.flatten(1).norm(dim=1)
    assert size.max() <= 1 + 1e-6 and size.mean() > 0.1
    assert not torch.equal(ExampleNoise(x, 4).offsets(norm), first)


@pytest.mark.parametrize("name", ["pgd", "cw", "tpgd"])
def test_results_do_not_depend_on_the_batch(tiny, name):
    """The multi-eps evaluation attacks only survivors: each point's result must be the one
    it gets in a run on all points."""
    model, x, y = tiny
    attack = ATTACKS.get(name)(steps=10, restarts=2)
    together = robust(model, attack(model, x, y, 0.05), y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    part = order[: len(y) // 3]
    assert torch.equal(robust(model, attack(model, x[part], y[part], 0.05), y[part]), together[part])
    assert 0 < together.sum() < len(y)


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_random_start(norm):
    x = torch.rand(64, 1, 8, 8)
    eps = EPS[norm]
    a = random_start(x, eps, torch.Generator().manual_seed(0), norm)
    b = random_start(x, eps, torch.Generator().manual_seed(0), norm)
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    delta = (a - x).flatten(1)
    dist = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
    assert dist.max() <= eps + 1e-6 and dist.mean() > eps / 10
    assert not torch.equal(a, random_start(x, eps, torch.Generator().manual_seed(1), norm))


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_sign_ascent_raises_the_objective_and_touches_no_parameter(tiny, norm):
    model, x, y = tiny
    ce = lambda logits, _: F.cross_entropy(logits, y, reduction="none")
    eps = EPS[norm]
    with torch.no_grad():  # gradients are enabled inside
        x_adv = sign_ascent(model, x, ce, eps, 10, eps / 4, x_init=x, norm=norm)
    scalar = lambda logits, _: F.cross_entropy(logits, y)
    assert torch.equal(sign_ascent(model, x, scalar, eps, 10, eps / 4, x_init=x, norm=norm), x_adv)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)
    outside = x + 2 * eps  # the start is projected onto the ball and [0, 1] first
    start = sign_ascent(model, x, ce, eps, 0, eps / 4, x_init=outside, norm=norm)
    delta = (start - x).flatten(1)
    assert (delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)).max() <= eps + 1e-6
    assert start.min() >= 0 and start.max() <= 1


def test_sign_ascent_stops_each_example_at_its_first_fooling_iterate(tiny):
    model, x, y = tiny
    ce = lambda logits, _: F.cross_entropy(logits, y, reduction="none")
    fooled = ~robust(model, x, y)
    x_adv = sign_ascent(model, x, ce, 0.3, 20, 0.05, x_init=x, y=y)
    assert torch.equal(x_adv[fooled], x[fooled])  # already fooled at the start: never moved
    steps = [sign_ascent(model, x, ce, 0.3, s, 0.05, x_init=x, y=y) for s in range(21)]
    for i in torch.nonzero(~robust(model, x_adv, y) & ~fooled).flatten():
        first = next(s for s in range(21) if not robust(model, steps[s][i : i + 1], y[i : i + 1]))
        assert torch.equal(x_adv[i], steps[first][i])


def test_pgd_train_examples(tiny):
    model, x, y = tiny
    model.train()
    try:
        before = {k: v.clone() for k, v in model.state_dict().items()}
        x_adv = pgd_train_examples(model, x, y, 0.1, 10, 0.025, torch.Generator().manual_seed(0))
        again = pgd_train_examples(model, x, y, 0.1, 10, 0.025, torch.Generator().manual_seed(0))
        assert torch.equal(x_adv, again) and not x_adv.requires_grad
        assert all(m.training for m in model.modules())
        assert all(p.requires_grad and p.grad is None for p in model.parameters())
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
        assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
        l2 = pgd_train_examples(model, x, y, 1.0, 5, 0.25, torch.Generator().manual_seed(0), norm="L2")
        assert (l2 - x).flatten(1).norm(dim=1).max() <= 1 + 1e-6 and l2.min() >= 0 and l2.max() <= 1
        model.eval()
        assert robust(model, x_adv, y).sum() < robust(model, x, y).sum()
        assert robust(model, l2, y).sum() < robust(model, x, y).sum()
    finally:
        model.eval()
