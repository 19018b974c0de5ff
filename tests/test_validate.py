"""`atbench validate`: the example package passes every check; broken defenses fail the check
that names their fault (exit 1); usage errors exit 2."""
import sys
from pathlib import Path

import pytest

from benchmark.commands.cli import main
from benchmark.commands.validate import (
    CHECKS,
    CheckFailed,
    Workbench,
    check_config,
    check_deterministic,
    check_input_range,
    check_metadata,
    check_training,
)
from benchmark.core.plugins import load_file

EXAMPLE = Path(__file__).parent / "example_defense"
BROKEN = '''
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from defenses.base import Defense, DefenseMeta, register


@dataclasses.dataclass(frozen=True)
class NoConfig:
    pass


@dataclasses.dataclass(frozen=True)
class TupleConfig:
    widths: tuple = (1, 2)


class Noisy(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) + torch.randn(len(x), 10)


class Base(Defense):
    Config = NoConfig
    meta = DefenseMeta(paper="A paper", venue="ICLR 2024", link="https://example.org/paper")

    def loss(self, model, x, y, ctx):
        return F.cross_entropy(model(x), y)


@register
class NoisyWrap(Base):
    name = "broken-noisy"

    def wrap(self, model):
        return Noisy(model)


@register
class DeclaredRandom(NoisyWrap):
    name = "broken-declared-random"
    meta = DefenseMeta(paper="A paper", venue="ICLR 2024", link="https://example.org/paper", randomized=True)


@register
class ConstantLoss(Base):
    name = "broken-constant-loss"

    def loss(self, model, x, y, ctx):
        return 0.0 * model(x).sum() + 1.0


@register
class BadMeta(Base):
    name = "broken-meta"
    meta = DefenseMeta(paper="", venue="ICLR 2024", link="example.org", threat_models=("L3",))


@register
class TupleField(Base):
    name = "broken-tuple-config"
    Config = TupleConfig


class Outputs(nn.Module):
    """The model's logits changed by `change`."""

    def __init__(self, model, change):
        super().__init__()
        self.model, self.change = model, change

    def forward(self, x):
        return self.change(self.model(x))


@register
class NaNWrap(Base):
    name = "broken-nan"

    def wrap(self, model):
        return Outputs(model, lambda z: z * float("nan"))


@register
class InfWrap(Base):
    name = "broken-inf"

    def wrap(self, model):
        return Outputs(model, lambda z: z.index_fill(1, torch.tensor([3]), float("inf")))


@register
class FiveClasses(Base):
    name = "broken-five-classes"

    def wrap(self, model):
        return Outputs(model, lambda z: z[:, :5])


@register
class Flat(Base):
    name = "broken-flat"

    def wrap(self, model):
        return Outputs(model, lambda z: z.flatten())
'''


pytestmark = pytest.mark.usefixtures("in_tree_defenses_only")


@pytest.fixture
def broken(tmp_path):
    """The broken defenses' file, loaded; returns its path."""
    path = tmp_path / "broken.py"
    path.write_text(BROKEN)
    load_file(path)
    return str(path)


@pytest.mark.system
def test_example_package_passes_every_check(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, "atbench_example_defense", raising=False)
    assert main(["validate", "example-smooth-at", "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[:-1]] == [f"PASS  {name}" for name, _ in CHECKS]
    assert out[-1] == f"example-smooth-at: {len(CHECKS)} of {len(CHECKS)} checks passed"


@pytest.mark.system
def test_non_deterministic_wrap_fails_validation_with_exit_1(broken, capsys):
    assert main(["validate", "broken-noisy", "--defense-file", broken, "-q"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  deterministic: two forward passes of wrap(model) in eval mode differ" in out
    assert "FAIL  sanity-flags: stochastic_outputs" in out and "PASS  training" in out
    assert out.splitlines()[-1] == "broken-noisy: 5 of 7 checks passed; failed: deterministic, sanity-flags"


NOT_SCORED = "the model is not scored"


@pytest.mark.parametrize("name,expected", [
    ("broken-nan", "model output contains NaN or Inf logits"),
    ("broken-inf", "model output contains NaN or Inf logits"),
    ("broken-five-classes", "model output has shape (16, 5), expected (batch, 10)"),
    ("broken-flat", "model output has shape (160,), expected (batch, 10)"),
])
@pytest.mark.system
def test_nan_inf_and_wrong_shape_outputs_are_reported_not_scored(broken, capsys, name, expected):
    assert main(["validate", name, "--defense-file", broken, "-q"]) == 1
    lines = capsys.readouterr().out.splitlines()
    failed = {line.split(":")[0].split()[1]: line for line in lines if line.startswith("FAIL")}
    assert set(failed) == {"deterministic", "evaluation", "sanity-flags"}, lines
    assert failed["evaluation"].startswith(f"FAIL  evaluation: {expected}; {NOT_SCORED}")
    assert all(NOT_SCORED in line for line in failed.values())


@pytest.mark.unit
def test_declared_randomness_is_not_a_failure(broken):
    assert check_deterministic(Workbench("broken-declared-random")).startswith("skipped: meta.randomized")


@pytest.mark.parametrize("name,check,expected", [
    ("broken-constant-loss", check_training, "left every weight unchanged"),
    ("broken-meta", check_metadata, "paper is empty; link 'example.org' is not an http(s) URL; threat models ('L3',)"),
    ("broken-tuple-config", check_config, "differs from Config() in widths"),
])
@pytest.mark.unit
def test_each_fault_fails_its_check(broken, name, check, expected):
    with pytest.raises(CheckFailed, match=expected.replace("(", r"\(").replace(")", r"\)")):
        check(Workbench(name))


@pytest.mark.unit
def test_input_range_check_catches_an_attack_that_forgets_the_range_check(monkeypatch):
    bench = Workbench("pgd-at")
    assert check_input_range(bench).startswith("all 5 attacks refuse inputs")
    monkeypatch.setattr("attacks.base.check_inputs", lambda x: None)
    with pytest.raises(CheckFailed, match="autoattack did not refuse inputs below 0: it "):
        check_input_range(bench)


@pytest.mark.parametrize("argv,expected", [
    (["validate", "no-such-defense"], "unknown defense 'no-such-defense'"),
    (["validate", "x", "--defense-file", "nowhere/mine.py"],
     "argument --defense-file: 'nowhere/mine.py' does not exist"),
])
@pytest.mark.system
def test_usage_errors_exit_2(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


@pytest.mark.system
def test_broken_defense_file_exits_2_naming_it(tmp_path, capsys):
    path = tmp_path / "typo.py"
    path.write_text(BROKEN + "\ndef broken(:\n")
    assert main(["validate", "broken-noisy", "--defense-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"defense file {path} failed to import: SyntaxError" in err
