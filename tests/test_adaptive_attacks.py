"""The adaptive attacks (attacks/adaptive/) and how submitted attacks register: each stays in the
ball and [0, 1] and is deterministic under its seed; BPDA breaks far more points of an
input-quantized model than PGD, EOT-PGD more of a randomized one than single-sample PGD; attack
files and installed packages register submitted attacks as defenses are registered."""
from __future__ import annotations

import sys
import textwrap

import pytest
import torch

import benchmark.core.plugins as plugins
from attacks.adaptive.bpda import BPDA, identity_backward
from attacks.adaptive.eot_pgd import EOTPGD
from attacks.adaptive.multi_targeted import MultiTargeted
from attacks.base import BUDGET_TOL, perturbation_norm
from attacks.pgd import PGD
from benchmark.core.errors import AtbenchError
from benchmark.core.plugins import ATTACK, load_file
from benchmark.core.registry import ATTACKS, SUBMITTED_ATTACKS
from benchmark.models.planted import (
    InputQuantizer,
    noisy,
    noisy_cnn_tiny_digits,
    quantized,
    quantized_cnn_mnist,
    quantized_logits_cnn_mnist,
)
from tests.helpers import tiny_mlp

pytestmark = pytest.mark.unit

ADAPTIVE = {"bpda": dict(steps=10), "eot-pgd": dict(steps=5, samples=4), "multi-targeted": dict(steps=5)}
EPS = {"Linf": 0.1, "L2": 1.0}


@pytest.fixture(scope="module")
def tiny():
    return tiny_mlp(120)


@pytest.fixture
def in_tree_attacks_only(monkeypatch):
    """The test leaves the submitted-attack registry as it found it."""
    SUBMITTED_ATTACKS.names()
    monkeypatch.setattr(SUBMITTED_ATTACKS, "_entries", dict(SUBMITTED_ATTACKS._entries))
    monkeypatch.setattr(plugins, "_LOADED", {})


def robust(model, x_adv, y, votes: int = 1):
    with torch.no_grad():
        return torch.stack([model(x_adv).argmax(1) == y for _ in range(votes)]).float().mean(0) > 0.5


def test_the_adaptive_attacks_are_submitted_attacks_not_protocol_attacks():
    assert SUBMITTED_ATTACKS.names() == sorted(ADAPTIVE)
    assert not set(ADAPTIVE) & set(ATTACKS.names())


@pytest.mark.parametrize("norm", ["Linf", "L2"])
@pytest.mark.parametrize("name", sorted(ADAPTIVE))
def test_stays_in_the_ball_and_in_range_and_is_deterministic_under_its_seed(tiny, name, norm):
    model, x, y = tiny
    target = quantized(model, 8).eval() if name == "bpda" else model
    attack = SUBMITTED_ATTACKS.get(name)(norm=norm, **ADAPTIVE[name])
    first = attack(target, x, y, EPS[norm])
    assert perturbation_norm(first - x, norm).max() <= EPS[norm] + BUDGET_TOL
    assert first.min() >= 0 and first.max() <= 1
    assert torch.equal(attack(target, x, y, EPS[norm]), first)
    assert robust(target, first, y).float().mean() < robust(target, x, y).float().mean()


def test_bpda_breaks_many_more_points_of_a_quantized_model_than_pgd(tiny):
    model, x, y = tiny
    target = quantized(model, 8).eval()
    pgd = robust(target, PGD(steps=20)(target, x, y, 0.1), y).sum().item()
    bpda = robust(target, BPDA(steps=20)(target, x, y, 0.1), y).sum().item()
    assert bpda < pgd - 30  # 100 of 120 survive PGD (zero gradients), 27 BPDA


def test_bpda_differentiates_declared_preprocessing_as_the_identity_only_inside_the_call(tiny):
    model, x, _ = tiny
    target = quantized(model, 8).eval()
    point = x[:2].clone().requires_grad_(True)
    with identity_backward(target) as count:
        (grad,) = torch.autograd.grad(target(point).sum(), point)
    assert count == 1 and grad.abs().sum() > 0
    (masked,) = torch.autograd.grad(target(point).sum(), point)
    assert masked.abs().sum() == 0  # round() outside the block: zero gradient
    assert torch.equal(BPDA(steps=5)(model, x, tiny[2], 0.1), PGD(steps=5)(model, x, tiny[2], 0.1))


def test_bpda_refuses_a_marked_layer_that_changes_the_shape(tiny):
    model, x, y = tiny
    bad = InputQuantizer(4)
    bad.forward = lambda t: t.flatten(1)
    with pytest.raises(AtbenchError, match="declares bpda_identity = True but maps shape"):
        BPDA(steps=1)(torch.nn.Sequential(bad, model).eval(), x, y, 0.1)


def test_eot_breaks_more_points_of_a_randomized_model_than_single_sample_pgd(tiny):
    model, x, y = tiny
    target = noisy(model, 0.3).eval()
    torch.manual_seed(0)
    pgd = robust(target, PGD(steps=20)(target, x, y, 0.1), y, votes=15).sum().item()
    eot = robust(target, EOTPGD(steps=20, samples=10)(target, x, y, 0.1), y, votes=15).sum().item()
    assert eot < pgd - 15  # by majority vote, 79 of 120 survive PGD, 31 EOT-PGD


def test_eot_draws_the_model_randomness_from_its_seed_and_leaves_the_global_generator_alone(tiny):
    model, x, y = tiny
    target = noisy(model, 0.3).eval()
    state = torch.get_rng_state()
    first = EOTPGD(steps=3, samples=3, seed=1)(target, x, y, 0.1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(EOTPGD(steps=3, samples=3, seed=1)(target, x, y, 0.1), first)
    assert not torch.equal(EOTPGD(steps=3, samples=3, seed=2)(target, x, y, 0.1), first)


def test_multi_targeted_tries_every_other_class_with_its_restarts(tiny, monkeypatch):
    import attacks.adaptive.multi_targeted as module

    model, x, y = tiny
    targets = []
    original = module.targeted_margin
    monkeypatch.setattr(module, "targeted_margin", lambda y_, t: targets.append(t) or original(y_, t))
    MultiTargeted(steps=1, restarts=2)(model, x, y, 1e-4)  # too small an eps to break a robust point
    assert len(targets) == 9
    tried = torch.stack(targets, dim=1)  # (B, 9)
    assert all(set(row.tolist()) == set(range(10)) - {label} for row, label in zip(tried, y.tolist()))
    assert robust(model, MultiTargeted(steps=10)(model, x, y, 0.1), y).sum() <= \
        robust(model, PGD(steps=10)(model, x, y, 0.1), y).sum()


def test_rounded_logits_have_no_input_gradient_and_bpda_sees_the_network_behind():
    from attacks.adaptive.bpda import identity_backward

    torch.manual_seed(0)
    wrapped = quantized_logits_cnn_mnist().eval()
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    wrapped(x).max(1).values.sum().backward()
    assert torch.count_nonzero(x.grad) == 0
    with identity_backward(wrapped) as marked:
        x.grad = None
        wrapped(x).max(1).values.sum().backward()
    assert marked == 1 and torch.count_nonzero(x.grad) > 0


def test_the_smoke_tracks_noisy_wrapper_takes_digits_and_draws_anew():
    wrapped = noisy_cnn_tiny_digits().eval()
    x = torch.rand(4, 1, 8, 8)
    assert wrapped(x).shape == (4, 10) and not torch.equal(wrapped(x), wrapped(x))


def test_a_planted_wrapper_loads_the_wrapped_architectures_checkpoint():
    wrapped = quantized_cnn_mnist()
    inner = wrapped.model
    state = {k: torch.full_like(v, 0.5) for k, v in inner.state_dict().items()}
    wrapped.load_state_dict(state)
    assert set(wrapped.state_dict()) == set(state) and torch.equal(inner[0].mean, torch.full_like(inner[0].mean, 0.5))


ATTACK_FILE = """
import dataclasses

from attacks.pgd import PGD
from attacks.submitted import register


@register
class Mine(PGD):
    name = "{name}"

    @dataclasses.dataclass(frozen=True)
    class Config(PGD.Config):
        pass
"""


@pytest.mark.usefixtures("in_tree_attacks_only")
def test_an_attack_file_registers_a_submitted_attack_and_a_protocol_name_is_refused(tmp_path):
    good = tmp_path / "mine.py"
    good.write_text(ATTACK_FILE.format(name="my-attack"))
    assert load_file(good, ATTACK) == ("my-attack",)
    assert SUBMITTED_ATTACKS.get("my-attack").__name__ == "Mine" and "my-attack" not in ATTACKS
    clash = tmp_path / "clash.py"
    clash.write_text(ATTACK_FILE.format(name="pgd"))
    with pytest.raises(AtbenchError, match="attack 'pgd' is the name of one of the protocol's attacks"):
        load_file(clash, ATTACK)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(AtbenchError, match="(?s)registers no attack.*from attacks.submitted import register"):
        load_file(empty, ATTACK)


@pytest.mark.usefixtures("in_tree_attacks_only")
def test_an_installed_package_adds_an_attack_through_the_entry_point_group(tmp_path, monkeypatch):
    (tmp_path / "pkg_attack.py").write_text(textwrap.dedent("""
        from attacks.pgd import PGD

        class Installed(PGD):
            name = "installed-attack"
    """))
    info = tmp_path / "pkg_attack-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pkg-attack\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[atbench.attacks]\ninstalled-attack = pkg_attack:Installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pkg_attack", raising=False)
    assert "installed-attack" in SUBMITTED_ATTACKS.installed() and "pkg_attack" not in sys.modules
    assert SUBMITTED_ATTACKS.get("installed-attack").__name__ == "Installed"
