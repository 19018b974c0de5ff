"""`atbench validate-attack`: the checks a submitted attack must pass before it attacks a board.

Each check reports PASS or FAIL with a one-line reason. They run the attack, with its default
`Config` and `seed`, on `POINTS` test points of the synthetic data set against a small CNN
(cnn-tiny) trained here for one seeded epoch, in a few seconds to a minute on a CPU:

- interface: a subclass of `attacks.base.Attack` that implements `perturb` and keeps the base
  class's `__call__` (which refuses inputs outside [0, 1], freezes and restores the model and
  asserts the budget on every call of a run); `Config` a frozen dataclass deriving from
  `AttackConfig` (a `norm` and a `seed`) that builds with its defaults; its repr (what the attack
  record stores) names every field; at least one norm (Linf, L2) accepted;
- input-range: at every eps of `EPS` (each norm it accepts) every output value lies in [0, 1];
- budget: at every eps of `EPS` the output lies within the eps ball around the input in the
  attack's norm (`attacks.base.perturbation_norm`, tolerance `attacks.base.BUDGET_TOL`);
- seed: two calls with the same seed give bit-identical outputs (a different seed may differ;
  the line says whether it did);
- labels-of-others: changing the labels of the other examples of the batch leaves an example's
  output bit-identical (each half of the batch in turn keeps its labels while the other half's
  change): no cross-example use of labels;
- labels-copy: replacing the label tensor by an equal copy (a new object, the model's parameters
  unchanged) leaves the output bit-identical, and the call modifies neither `x` nor `y` in place.

The output checked is that of `perturb`, run as `Attack.__call__` runs it (model in eval mode,
parameters frozen) but without the call's own budget assertion, so a range or budget fault is
reported by its own check.

What cannot be checked, and is left to review and to the records: that the attack uses an
example's label only through its own loss (the checks see two consequences: no dependence on
other examples' labels and none on the label tensor's identity; an attack may still, say, read
the data set, the test labels or anything else from files or globals); that it is strong, or
faithful to its paper; that it is deterministic on other devices, thread counts or batchings
than the ones tried (runs are single-threaded, as records are made); that it keeps its budget
at eps or on models not tried (every call in a run asserts the budget, so a run that leaves the
ball stops with an error instead of writing a record).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import BUDGET_TOL, Attack, AttackConfig, frozen_eval, perturbation_norm
from attacks.pgd import NORMS
from benchmark.commands.validate import CheckFailed, run_checks, write_report
from benchmark.core.errors import AtbenchError
from benchmark.core.registry import SUBMITTED_ATTACKS
from benchmark.models.architectures import build_model
from benchmark.pipeline.data import load_dataset

DATASET, MODEL = "synthetic", "cnn-tiny"
POINTS = 20
SEED = 0
#: The eps each norm's attack is checked at; the middle one is used by the seed and label checks.
EPS = {"Linf": (0.05, 0.1, 0.3), "L2": (0.5, 1.0, 3.0)}


def trained_model() -> nn.Module:
    """cnn-tiny trained for one seeded epoch of Adam on the synthetic training split, in eval mode."""
    bundle = load_dataset(DATASET)
    torch.manual_seed(SEED)
    model = build_model(MODEL, bundle)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    order = torch.randperm(len(bundle.train.y), generator=torch.Generator().manual_seed(SEED))
    for batch in order.split(64):
        optimiser.zero_grad()
        F.cross_entropy(model(bundle.train.x[batch]), bundle.train.y[batch]).backward()
        optimiser.step()
    return model.eval()


class AttackBench:
    """What the checks share: the attack class, the model, the points and, computed on first use,
    the attack's outputs at every (norm, eps)."""

    def __init__(self, name: str):
        self.cls = SUBMITTED_ATTACKS.get(name)
        test = load_dataset(DATASET).test
        self.x, self.y = test.x[:POINTS], test.y[:POINTS]

    @functools.cached_property
    def model(self) -> nn.Module:
        """The model every check attacks."""
        return trained_model()

    @functools.cached_property
    def norms(self) -> tuple[str, ...]:
        """The norms whose config builds (`Config(norm=...)` raises for a norm the attack refuses)."""
        accepted = []
        for norm in NORMS:
            try:
                self.attack(norm)
            except (AtbenchError, TypeError, ValueError):
                continue
            accepted.append(norm)
        return tuple(accepted)

    def attack(self, norm: str, seed: int | None = None) -> Attack:
        """The attack with its default config in `norm` (and `seed`, when given)."""
        config = self.cls.Config(norm=norm)
        return self.cls(config if seed is None else dataclasses.replace(config, seed=seed))

    def run(self, attack: Attack, eps: float, x: torch.Tensor | None = None,
            y: torch.Tensor | None = None) -> torch.Tensor:
        """`attack.perturb` on the points (or `x`, `y`), as `Attack.__call__` runs it, without its
        budget assertion.

        Raises:
            CheckFailed: the output is not a tensor of the input's shape.
        """
        x = self.x if x is None else x
        y = self.y if y is None else y
        with frozen_eval(self.model):
            out = attack.perturb(self.model, x, y, float(eps))
        if not torch.is_tensor(out) or out.shape != x.shape:
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise CheckFailed(f"perturb returned {shape}, not a tensor of the input's shape {tuple(x.shape)}")
        return out.detach()

    @functools.cached_property
    def outputs(self) -> dict[tuple[str, float], torch.Tensor]:
        """The default attack's output at every (norm, eps) of `EPS`, for each accepted norm."""
        if not self.norms:
            raise CheckFailed("its Config accepts neither norm (Linf, L2)")
        return {(norm, eps): self.run(self.attack(norm), eps) for norm in self.norms for eps in EPS[norm]}

    @functools.cached_property
    def repeated(self) -> torch.Tensor:
        """A second call of the default attack in its first norm at its middle eps."""
        norm = self.norms[0]
        return self.run(self.attack(norm), _middle(norm))


def _middle(norm: str) -> float:
    return EPS[norm][len(EPS[norm]) // 2]


def check_interface(bench: AttackBench) -> str:
    """An `Attack` subclass with `perturb`, the base `__call__`, a frozen `AttackConfig` and a norm."""
    cls = bench.cls
    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise CheckFailed(f"{cls!r} is not a subclass of attacks.base.Attack")
    problems = []
    if cls.perturb is Attack.perturb:
        problems.append("it does not implement perturb")
    if cls.__call__ is not Attack.__call__:
        problems.append("it overrides __call__ (the base class's call checks inputs and budget on every call)")
    config = cls.Config
    if not (dataclasses.is_dataclass(config) and issubclass(config, AttackConfig)
            and config.__dataclass_params__.frozen):
        problems.append("Config is not a frozen dataclass deriving from attacks.base.AttackConfig")
    else:
        text = repr(config())
        missing = [f.name for f in dataclasses.fields(config) if f"{f.name}=" not in text]
        if missing:
            problems.append(f"repr(Config()) does not show {', '.join(missing)}: the attack record stores the repr")
    if problems:
        raise CheckFailed("; ".join(problems))
    if not bench.norms:
        raise CheckFailed("its Config accepts neither norm (Linf, L2)")
    return f"{cls.__name__}({cls.Config.__name__}), norms {', '.join(bench.norms)}: {cls.Config()!r}"


def check_input_range(bench: AttackBench) -> str:
    """Every output value lies in [0, 1]."""
    for (norm, eps), out in bench.outputs.items():
        low, high = out.min().item(), out.max().item()
        if low < 0 or high > 1:
            raise CheckFailed(f"{norm} eps {eps:g}: the output leaves [0, 1] (min {low:.4g}, max {high:.4g})")
    return f"outputs in [0, 1] at {len(bench.outputs)} (norm, eps) pairs"


def check_budget(bench: AttackBench) -> str:
    """Every output lies within the eps ball (plus `BUDGET_TOL`) in the attack's norm."""
    for (norm, eps), out in bench.outputs.items():
        distance = perturbation_norm(out - bench.x, norm).max().item()
        if distance > eps + BUDGET_TOL:
            raise CheckFailed(f"{norm} eps {eps:g}: the output leaves the eps ball (largest {norm} distance "
                              f"{distance:.4g} > eps {eps:g} + {BUDGET_TOL:g})")
    return f"outputs within the eps ball at {', '.join(f'{n} {EPS[n]}' for n in bench.norms)}"


def check_seed(bench: AttackBench) -> str:
    """The same seed gives bit-identical outputs; another seed may differ."""
    norm, seed = bench.norms[0], bench.cls.Config().seed
    first, second = bench.outputs[norm, _middle(norm)], bench.repeated
    if not torch.equal(first, second):
        rows = int((first != second).flatten(1).any(dim=1).sum())
        raise CheckFailed(f"two calls with seed {seed} differ on {rows} of {len(first)} examples (by up to "
                          f"{(first - second).abs().max().item():.3g}): draw every random number from the seed")
    other = bench.run(bench.attack(norm, seed + 1), _middle(norm))
    return (f"seed {seed} twice: bit-identical; seed {seed + 1}: "
            f"{'equal' if torch.equal(first, other) else 'different'} (allowed either way)")


def _reference(bench: AttackBench) -> tuple[str, float, torch.Tensor]:
    """(norm, eps, output) the label checks compare with.

    Raises:
        CheckFailed: the attack is not deterministic under its seed, so no comparison means anything.
    """
    norm = bench.norms[0]
    eps = _middle(norm)
    if not torch.equal(bench.outputs[norm, eps], bench.repeated):
        raise CheckFailed("not checkable: two calls with the same seed differ (see the seed check)")
    return norm, eps, bench.outputs[norm, eps]


def _changed_labels(y: torch.Tensor, rows: torch.Tensor, classes: int) -> torch.Tensor:
    """`y` with every label of `rows` moved to the next class."""
    out = y.clone()
    out[rows] = (out[rows] + 1) % classes
    return out


def check_labels_of_others(bench: AttackBench) -> str:
    """An example's output does not change when the other examples' labels change."""
    norm, eps, reference = _reference(bench)
    classes = load_dataset(DATASET).num_classes
    half = len(bench.y) // 2
    for kept, changed in ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))):
        others = torch.arange(len(bench.y))[changed]
        out = bench.run(bench.attack(norm), eps, y=_changed_labels(bench.y, others, classes))
        moved = (out[kept] != reference[kept]).flatten(1).any(dim=1)
        if moved.any():
            first = int(torch.arange(len(bench.y))[kept][moved][0])
            raise CheckFailed(f"changing the labels of examples {others[0]}..{others[-1]} changed the output of "
                              f"{int(moved.sum())} other examples (first: example {first}): the attack reads other "
                              "examples' labels; use each example's label only in its own loss")
    return "each half's outputs are bit-identical when the other half's labels change"


def check_labels_copy(bench: AttackBench) -> str:
    """An equal copy of the labels gives the same output; neither `x` nor `y` is changed in place."""
    norm, eps, reference = _reference(bench)
    x, y = bench.x.clone(), bench.y.clone()
    out = bench.run(bench.attack(norm), eps, x=x, y=y)
    if not (torch.equal(x, bench.x) and torch.equal(y, bench.y)):
        raise CheckFailed("the call modified its input images or labels in place")
    if not torch.equal(out, reference):
        raise CheckFailed("replacing the labels by an equal copy changed the output: the attack depends on the "
                          "label tensor's identity (a cache keyed by the object, state kept between calls)")
    return "an equal copy of the labels gives the same output; inputs and labels unchanged"


CHECKS: tuple[tuple[str, Callable[[AttackBench], str]], ...] = (
    ("interface", check_interface), ("input-range", check_input_range), ("budget", check_budget),
    ("seed", check_seed), ("labels-of-others", check_labels_of_others), ("labels-copy", check_labels_copy),
)


def report(name: str, write: Callable[[str], None]) -> bool:
    """Run every check on submitted attack `name`, writing one line per check and a summary with
    `write`; True when every check passed.

    Raises:
        AtbenchError: unknown attack name (before any check runs).
    """
    return write_report(name, run_checks(AttackBench(name), CHECKS), write)
