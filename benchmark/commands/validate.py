"""`atbench validate`: the checks a submitter runs on a defense before opening a pull request.

Each check reports PASS or FAIL with a one-line reason; they run on the synthetic-tiny track
(its data, model and protocol; a defense that trains on L2 tracks only trains on its L2 copy,
`checked_track`) in well under a minute on a CPU:

- metadata: id, paper, venue and link filled in, fidelity valid, threat models and
  architectures known;
- config: `Config` is a frozen dataclass that survives asdict -> JSON -> `Config(**)` (how a
  record stores it and a track sets it), and the defense built from it reports the same dict;
- training: two steps of the reference harness's epoch loop with the defense's loss change
  the weights;
- deterministic: two forward passes of the deployed model (`wrap`, after `calibrate`) are
  finite logits of the right shape and equal, unless `meta.randomized`;
- input-range: every attack of the protocol refuses a batch with values below 0 or above 1
  (an `AtbenchError` saying so) before the deployed model sees it;
- evaluation: the protocol on a handful of test points runs and yields finite accuracies (a
  model whose outputs are NaN, Inf or of the wrong shape fails here, not scored);
- sanity-flags: no sanity flag fires on that model and evaluation (`stochastic_outputs`
  excepted for a randomized defense), except the two that compare attacks (`COMPARING_FLAGS`):
  on a few points one point decides them, so the full evaluation (`atbench run`) reports them.

The model of the last four checks is the one the training check trained (a freshly built one
if that check failed); the last two share one evaluation.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from attacks.pgd import NORMS
from benchmark.core.errors import AtbenchError
from benchmark.core.names import is_slug
from benchmark.core.registry import DEFENSES, MODELS, TRACKS
from benchmark.pipeline.analysis.run import probe, sanity_flags
from benchmark.pipeline.data import Split, load_dataset
from benchmark.pipeline.evaluate import (
    aggregate,
    check_outputs,
    checked_logits,
    run_protocol,
    select_test_subset,
)
from benchmark.pipeline.protocol import Protocol, build_attack, load_protocol
from benchmark.pipeline.tracks import Track
from benchmark.pipeline.train import (
    TrainingRun,
    check_supports,
    context,
    effective_track,
    train_epoch,
)
from defenses.base import FIDELITIES, DefenseMeta

TRACK = "synthetic-tiny"
#: The L2 eps of the track's L2 copy, on which a defense that trains on L2 tracks only is checked.
L2_EPS = 0.5
TRAIN_STEPS = 2
POINTS = 20
SEED = 0
#: Sanity flags that compare two attacks' accuracies; too noisy on `POINTS` points to check.
COMPARING_FLAGS = ("tpgd_much_stronger_than_pgd", "square_beats_white_box")


def checked_track(cls) -> Track:
    """The track the checks train on: `TRACK`, or its L2 copy (eps `L2_EPS`) for a defense that
    declares only other threat models than the track's (an L2 certified method such as gloro)."""
    track = TRACKS.get(TRACK)
    meta = getattr(cls, "meta", None)
    if meta is None or meta.any_track_norm or track.norm in meta.threat_models or "L2" not in meta.threat_models:
        return track
    return dataclasses.replace(track, name=f"{TRACK}-l2", norm="L2", eps=L2_EPS)


class CheckFailed(Exception):
    """A check's failure; its message is the one-line reason."""


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    passed: bool
    reason: str

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.reason}"


class Workbench:
    """What the checks share: the defense class, the track, its data and protocol (restricted
    to `POINTS` test points), and, built on first use, the training run, the deployed model and
    the short evaluation."""

    def __init__(self, name: str):
        self.cls = DEFENSES.get(name)
        self.track = checked_track(self.cls)
        self.bundle = load_dataset(self.track.dataset)
        self.device = torch.device("cpu")
        protocol = load_protocol(self.track.protocol)
        self.randomized = bool(getattr(getattr(self.cls, "meta", None), "randomized", False))
        self.protocol: Protocol = protocol.for_randomized() if self.randomized else protocol
        indices = select_test_subset(self.bundle.test.y.numpy(), POINTS, protocol.subset_seed)
        self.x, self.y = self.bundle.test.x[indices], self.bundle.test.y[indices]

    @functools.cached_property
    def defense(self):
        """The defense as a track builds it."""
        return self.track.defense(self.cls.name)

    @functools.cached_property
    def trained_track(self):
        """The track with the defense's recipe overrides applied."""
        return effective_track(self.track, self.defense)

    @functools.cached_property
    def run(self) -> TrainingRun:
        """The harness's training state: the seeded model, optimiser and generators."""
        return TrainingRun(self.trained_track, self.defense, self.bundle, SEED, self.device)

    def step_context(self):
        """The harness's context for the run's current step."""
        return context(self.run, self.trained_track, self.device, self.bundle.num_classes)

    @functools.cached_property
    def deployed(self) -> nn.Module:
        """The run's model calibrated on the validation split and wrapped, in eval mode."""
        model, val = self.run.model.eval(), self.bundle.val
        self.defense.calibrate(model, lambda: zip(val.x.split(500), val.y.split(500)), self.step_context())
        return self.defense.wrap(model).eval()

    @functools.cached_property
    def evaluation(self):
        """The protocol's result on the test points and its aggregates (refused, before any attack
        runs, when the deployed model's outputs are not finite logits of the right shape)."""
        check_outputs(self.deployed, self.x, self.bundle.num_classes, self.device)
        outcome = run_protocol(self.deployed, self.protocol, self.x, self.y, self.device, progress=False,
                               votes=self.protocol.analysis.votes if self.randomized else 1, label=self.cls.name)
        return outcome, aggregate(outcome.flags, self.y.numpy(), self.protocol, self.bundle.num_classes)


def check_metadata(bench: Workbench) -> str:
    """Id, paper, venue and link filled in; fidelity valid; threat models and architectures known."""
    cls, meta = bench.cls, getattr(bench.cls, "meta", None)
    if not isinstance(meta, DefenseMeta):
        raise CheckFailed("`meta` is not a defenses.base.DefenseMeta")
    problems = [] if is_slug(cls.name) else [f"name {cls.name!r} is not an id like 'pgd-at'"]
    problems += [f"{field} is empty" for field in ("paper", "venue", "link")
                 if not isinstance(getattr(meta, field), str) or not getattr(meta, field).strip()]
    if meta.link and not str(meta.link).startswith(("https://", "http://")):
        problems.append(f"link {meta.link!r} is not an http(s) URL")
    if meta.fidelity not in FIDELITIES:
        problems.append(f"fidelity {meta.fidelity!r} is not one of {', '.join(FIDELITIES)}")
    if not meta.threat_models or set(meta.threat_models) - set(NORMS):
        problems.append(f"threat models {tuple(meta.threat_models)} must be some of {', '.join(NORMS)}")
    unknown = sorted(set(meta.architectures or ()) - set(MODELS.names()))
    if unknown:
        problems.append(f"unknown architectures {', '.join(unknown)}")
    if problems:
        raise CheckFailed("; ".join(problems))
    return f"{meta.paper!r} ({meta.venue}), fidelity {meta.fidelity}, threat models {', '.join(meta.threat_models)}"


def check_config(bench: Workbench) -> str:
    """`Config` is a frozen dataclass; asdict -> JSON -> `Config(**)` gives it back, and the
    defense built from that config reports the same dict."""
    config_cls = bench.cls.Config
    if not dataclasses.is_dataclass(config_cls) or not config_cls.__dataclass_params__.frozen:
        raise CheckFailed("Config is not a frozen dataclass (@dataclasses.dataclass(frozen=True))")
    config = config_cls()
    data = json.loads(json.dumps(dataclasses.asdict(config), allow_nan=False))
    back = config_cls(**data)
    if back != config:
        changed = [f.name for f in dataclasses.fields(config) if getattr(back, f.name) != getattr(config, f.name)]
        raise CheckFailed(f"Config(**json) differs from Config() in {', '.join(changed)} (JSON has no tuples or "
                          "sets: use lists or numbers)")
    if bench.cls(back).config_dict() != data:
        raise CheckFailed("the defense built from the round-tripped config reports a different config_dict()")
    if bench.defense.config_dict() != data:
        raise CheckFailed(f"Track.defense builds a different config on {bench.track.name}")
    return f"Config() -> asdict -> JSON -> Config(**) is equal ({len(data)} fields)"


def check_training(bench: Workbench) -> str:
    """Two steps of the harness's epoch loop with the defense's loss change the weights."""
    track, run = bench.trained_track, bench.run
    check_supports(bench.cls, track)
    run.epoch = track.burn_in_epochs  # the first epoch the defense's loss trains
    train = bench.bundle.train
    n = TRAIN_STEPS * track.batch_size
    bundle = dataclasses.replace(bench.bundle, train=Split(train.x[:n], train.y[:n]))
    before = [p.detach().clone() for p in run.model.parameters()]
    bench.defense.on_epoch_start(run.model, bench.step_context())
    loss = train_epoch(run, track, bench.defense, bundle, bench.device, TRAIN_STEPS, progress=False)
    changed = sum(not torch.equal(a, p) for a, p in zip(before, run.model.parameters()))
    if not changed:
        raise CheckFailed(f"{TRAIN_STEPS} training steps left every weight unchanged (mean loss {loss:.4g}): "
                          "the loss does not depend on the weights")
    return f"{TRAIN_STEPS} harness steps (mean loss {loss:.4g}) changed {changed} of {len(before)} weight tensors"


def check_deterministic(bench: Workbench) -> str:
    """Two forward passes of the deployed model are equal, unless the defense is randomized."""
    if bench.randomized:
        return "skipped: meta.randomized (the protocol adds EOT and majority votes)"
    with torch.no_grad():
        first = checked_logits(bench.deployed, bench.x, bench.bundle.num_classes)
        second = checked_logits(bench.deployed, bench.x, bench.bundle.num_classes)
    if not torch.equal(first, second):
        raise CheckFailed(f"two forward passes of wrap(model) in eval mode differ by up to "
                          f"{(first - second).abs().max().item():.3g}; set meta.randomized=True if that is intended")
    return "two forward passes of wrap(model) in eval mode are equal"


def _misbehaviour(attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, calls: list) -> str | None:
    """None when `attack` refuses `x` with the [0, 1] error before running the model (`calls`
    counts the model's forward passes); else what it did instead."""
    calls.clear()
    try:
        attack(model, x, y, eps)
    except AtbenchError as exc:
        if "outside [0, 1]" not in exc.problem:
            return f"raised: {exc.problem}"
    except Exception as exc:
        return f"raised {type(exc).__name__}: {exc}"
    else:
        return "accepted them"
    return f"ran the model {len(calls)} times first" if calls else None


def check_input_range(bench: Workbench) -> str:
    """Every attack of the protocol refuses inputs below 0 or above 1 before the model sees them."""
    model, x, y = bench.deployed, bench.x[:4], bench.y[:4]
    eps = bench.protocol.eps_value(bench.protocol.primary_eps)
    calls: list = []
    hook = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        for column in bench.protocol.columns:
            for bad, where in ((x - 0.5, "below 0"), (x + 0.5, "above 1")):
                wrong = _misbehaviour(build_attack(column, bench.protocol), model, bad, y, eps, calls)
                if wrong:
                    raise CheckFailed(f"{column.column} did not refuse inputs {where}: it {wrong}")
    finally:
        hook.remove()
    return f"all {len(bench.protocol.columns)} attacks refuse inputs below 0 and above 1 before running the model"


def check_evaluation(bench: Workbench) -> str:
    """The protocol on a few test points yields finite accuracies in [0, 1]."""
    _, summary = bench.evaluation
    numbers = [summary["clean_acc"], *summary["worst_case"].values(),
               *(v for series in summary["robust_acc"].values() for v in series.values())]
    bad = [v for v in numbers if not (math.isfinite(v) and 0 <= v <= 1)]
    if bad:
        raise CheckFailed(f"{len(bad)} of {len(numbers)} accuracies are not finite numbers in [0, 1]")
    primary = bench.protocol.primary_eps
    return (f"{len(numbers)} finite accuracies on {len(bench.y)} test points: clean {summary['clean_acc']:.2f}, "
            f"worst case at eps {primary} {summary['worst_case'][primary]:.2f}")


def check_sanity(bench: Workbench) -> str:
    """No sanity flag fires on the deployed model and its evaluation (`COMPARING_FLAGS` and, for a
    randomized defense, `stochastic_outputs` excepted)."""
    outcome, summary = bench.evaluation
    protocol = bench.protocol
    flags = sanity_flags(protocol, outcome, summary,
                         probe(bench.deployed, protocol, bench.x, bench.y, bench.bundle.num_classes, bench.device))
    checked = [name for name in flags if name not in COMPARING_FLAGS
               and not (bench.randomized and name == "stochastic_outputs")]
    fired = [name for name in checked if flags[name]["fired"]]
    if fired:
        raise CheckFailed("; ".join(f"{name}: {flags[name]['detail']}" for name in fired))
    return f"quiet: {', '.join(checked)}"


CHECKS: tuple[tuple[str, Callable[[Workbench], str]], ...] = (
    ("metadata", check_metadata), ("config", check_config), ("training", check_training),
    ("deterministic", check_deterministic), ("input-range", check_input_range),
    ("evaluation", check_evaluation), ("sanity-flags", check_sanity),
)


def reason(exc: Exception) -> str:
    """The one-line reason a check failed with `exc`."""
    if isinstance(exc, CheckFailed):
        return str(exc)
    text = f"{exc.problem} (fix: {exc.fix})" if isinstance(exc, AtbenchError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def run_checks(bench, checks: Sequence[tuple[str, Callable]]) -> Iterator[CheckResult]:
    """Run each `(name, check)` on `bench`, yielding each result as it finishes. An error inside a
    check (the submission's code raising, say) fails that check and the next ones still run."""
    for check_name, check in checks:
        try:
            result = CheckResult(check_name, True, check(bench))
        except Exception as exc:
            result = CheckResult(check_name, False, reason(exc))
        yield result


def write_report(name: str, results: Iterable[CheckResult], write: Callable[[str], None]) -> bool:
    """Write one line per check result and a summary naming `name` with `write`; True when every
    check passed."""
    done = []
    for result in results:
        write(str(result))
        done.append(result)
    failed = [r.name for r in done if not r.passed]
    summary = f"{name}: {len(done) - len(failed)} of {len(done)} checks passed"
    write(f"{summary}; failed: {', '.join(failed)}" if failed else summary)
    return not failed


def validate(name: str) -> Iterator[CheckResult]:
    """Run every check on defense `name`, yielding each result as it finishes (`run_checks`).

    Raises:
        AtbenchError: unknown defense name (before any check runs).
    """
    return run_checks(Workbench(name), CHECKS)


def report(name: str, write: Callable[[str], None]) -> bool:
    """Validate defense `name`, writing one line per check and a summary with `write`; True
    when every check passed."""
    return write_report(name, validate(name), write)
