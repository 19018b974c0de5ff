"""`atbench validate-attack`: atbench's adaptive attacks pass every check; planted bad attacks (one
leaving the ball, one leaving [0, 1], one not deterministic under its seed, one reading other
examples' labels) each fail the check that names their fault, with its own message (exit 1)."""
from __future__ import annotations

import pytest

import benchmark.core.plugins as plugins
from benchmark.commands.cli import main
from benchmark.commands.validate_attack import CHECKS, AttackBench, report
from benchmark.core.plugins import ATTACK, load_file
from benchmark.core.registry import SUBMITTED_ATTACKS

pytestmark = pytest.mark.unit

PLANTED = '''
import dataclasses

import torch

from attacks.base import Attack, AttackConfig
from attacks.pgd import PGD, project
from attacks.submitted import register


@register
class LeavesBall(Attack):
    name = "leaves-ball"

    def perturb(self, model, x, y, eps):
        return (x + 2 * eps).clamp(0, 1)


@register
class LeavesRange(Attack):
    name = "leaves-range"

    @dataclasses.dataclass(frozen=True)
    class Config(AttackConfig):
        def __post_init__(self):
            if self.norm != "Linf":
                raise ValueError("Linf only")

    def perturb(self, model, x, y, eps):
        return x + eps


@register
class Unseeded(Attack):
    name = "unseeded"

    def perturb(self, model, x, y, eps):
        return project(x + eps * (2 * torch.rand(x.shape) - 1), x, eps, self.config.norm)


@register
class ReadsOthersLabels(PGD):
    name = "reads-others-labels"

    @dataclasses.dataclass(frozen=True)
    class Config(PGD.Config):
        pass

    def objective(self, y):
        return super().objective(y.roll(1))  # each example's loss uses the previous example's label
'''


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    path = tmp_path_factory.mktemp("planted") / "planted_attacks.py"
    path.write_text(PLANTED)
    return path


@pytest.fixture
def loaded(planted, monkeypatch):
    SUBMITTED_ATTACKS.names()
    monkeypatch.setattr(SUBMITTED_ATTACKS, "_entries", dict(SUBMITTED_ATTACKS._entries))
    monkeypatch.setattr(plugins, "_LOADED", {})
    load_file(planted, ATTACK)


def results(name):
    lines = []
    passed = report(name, lines.append)
    return passed, {line.split(":")[0].split()[1]: line for line in lines[:-1]}


def test_the_adaptive_attacks_pass_every_check():
    for name in ("bpda", "multi-targeted"):
        passed, lines = results(name)
        assert passed and list(lines) == [n for n, _ in CHECKS], lines


@pytest.mark.usefixtures("loaded")
@pytest.mark.parametrize("name,check,message", [
    ("leaves-ball", "budget", "Linf eps 0.05: the output leaves the eps ball (largest Linf distance 0.1 > eps 0.05"),
    ("leaves-range", "input-range", "Linf eps 0.05: the output leaves [0, 1] (min 0.05, max 1.05)"),
    ("unseeded", "seed", "two calls with seed 0 differ on 20 of 20 examples"),
    ("reads-others-labels", "labels-of-others", "changing the labels of examples 10..19 changed the output of"),
])
def test_a_planted_bad_attack_fails_its_own_check_only(name, check, message):
    passed, lines = results(name)
    assert not passed
    assert lines[check].startswith(f"FAIL  {check}: ") and message in lines[check]
    failed = {n for n, line in lines.items() if line.startswith("FAIL")}
    unseeded_also = {"labels-of-others", "labels-copy"} if name == "unseeded" else set()
    assert failed == {check} | unseeded_also
    if unseeded_also:
        assert all("not checkable: two calls with the same seed differ" in lines[n] for n in unseeded_also)


@pytest.mark.usefixtures("loaded")
def test_leaving_the_ball_by_the_call_is_refused_as_well():
    bench = AttackBench("leaves-ball")
    with pytest.raises(AssertionError, match="exceeds eps"):
        bench.attack("Linf")(bench.model, bench.x, bench.y, 0.05)


@pytest.mark.usefixtures("loaded")
def test_the_command_exits_1_on_a_failure_and_2_on_an_unknown_attack(planted, capsys):
    assert main(["validate-attack", "leaves-range", "--attack-file", str(planted)]) == 1
    assert "FAIL  input-range" in capsys.readouterr().out
    assert main(["validate-attack", "no-such-attack"]) == 2
    assert "unknown submitted attack 'no-such-attack'" in capsys.readouterr().err
