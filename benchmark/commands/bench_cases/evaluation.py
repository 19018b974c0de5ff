"""Bench cases of the evaluation: multi-eps against per-eps, our PGD against torchattacks', and
our AutoAttack adapter against pyautoattack called directly."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from attacks.autoattack import AutoAttackAdapter, quiet_autoattack
from attacks.base import frozen_eval
from attacks.pgd import PGD, cross_entropy, sign_ascent
from benchmark.commands.bench import BENCH_CASES, Comparison, Workload, time_pair
from benchmark.core.errors import AtbenchError
from benchmark.pipeline.evaluate import predict, run_protocol
from leaderboard.derive import attack_flag_names


def _primary_eps(work: Workload) -> float:
    return work.protocol.eps_value(work.protocol.primary_eps)


def each_eps_from_scratch(work: Workload) -> dict[str, np.ndarray]:
    """The per-example flags of the protocol run once per eps on all points (the multi-eps
    case's reference)."""
    flags: dict[str, np.ndarray] = {}
    for eps in work.protocol.eps:
        one = dataclasses.replace(work.protocol, eps=(eps,))
        flags.update(run_protocol(work.model, one, work.x, work.y, work.device, progress=False).flags)
    return flags


@BENCH_CASES.register(name="multi-eps")
def multi_eps_vs_per_eps(work: Workload) -> Comparison:
    """The protocol's multi-eps evaluation (eps in increasing order, only survivors attacked
    again) against evaluating each eps from scratch on all points.

    Not weaker means: for every (attack, eps), no point is robust in the multi-eps result that
    the from-scratch evaluation broke. The details give both accuracies per (attack, eps) and
    the count of such points (`robust_only_in_multi`)."""
    ours, ref = time_pair(lambda: run_protocol(work.model, work.protocol, work.x, work.y, work.device, progress=False),
                          lambda: each_eps_from_scratch(work), work.device, work.repeats)
    multi, scratch = ours.result, ref.result
    columns = {}
    for name in attack_flag_names(multi.flags):
        only_multi = int((multi.flags[name] & ~scratch[name]).sum())
        columns[name] = {"multi_eps": float(multi.flags[name].mean()), "per_eps": float(scratch[name].mean()),
                         "robust_only_in_multi": only_multi}
    table = {"header": ["attack@eps", "multi-eps", "per-eps", "robust only in multi-eps"],
             "rows": [[k, f"{v['multi_eps']:.3f}", f"{v['per_eps']:.3f}", v["robust_only_in_multi"]]
                      for k, v in columns.items()]}
    return Comparison("multi-eps", "multi-eps evaluation", "each eps from scratch", ours.seconds, ref.seconds,
                      all(c["robust_only_in_multi"] == 0 for c in columns.values()),
                      {"points": len(work.y), "eps": list(work.protocol.eps), "columns": columns,
                       "multi_runtimes_s": multi.runtimes, "table": table},
                      len(work.y), ours.peak_mb, ref.peak_mb)


def _pgd_settings(work: Workload) -> dict:
    """The protocol's PGD column settings (steps, step_ratio, norm), or PGD's defaults."""
    for column in work.protocol.columns:
        if column.attack == "pgd":
            return {k: v for k, v in column.settings.items() if k in ("steps", "step_ratio", "norm")}
    return {}


def torchattacks_pgd(model: torch.nn.Module, eps: float, steps: int, step_ratio: float, random_start: bool):
    """torchattacks' PGD (last iterate), its random start seeded through torch's global
    generator inside a fork (the caller's random streams are untouched)."""
    try:
        import torchattacks
    except ImportError as exc:
        raise AtbenchError("the pgd-vs-torchattacks bench case needs torchattacks, which is not installed",
                           "pip install --no-deps torchattacks (--no-deps keeps your torch), "
                           "or leave the case out") from exc
    attack = torchattacks.PGD(model, eps=eps, alpha=step_ratio * eps, steps=steps, random_start=random_start)

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(0)
            return attack(x, y)

    return run


@BENCH_CASES.register(name="pgd-vs-torchattacks")
def pgd_vs_torchattacks(work: Workload) -> Comparison:
    """Our PGD against torchattacks' PGD with the same steps, step size and eps (the
    protocol's PGD settings at its primary eps, one restart) on the same model and points.

    Timed as the attacks are used: each from its own uniform random start. Ours stops each
    point at its first fooling iterate (and drops it from the batch); torchattacks runs every
    step and keeps the last iterate. Not weaker is decided where the two follow the same path:
    both started at x itself (`sign_ascent` is our PGD's core), no point may be robust under
    ours that torchattacks broke. With random starts each side draws other starts, so the two
    accuracies are reported, not compared."""
    settings = _pgd_settings(work)
    if settings.get("norm", "Linf") != "Linf":
        raise AtbenchError("the pgd-vs-torchattacks case compares Linf PGD", "bench it on a Linf protocol")
    eps, device = _primary_eps(work), torch.device(work.device)
    steps, ratio = settings.get("steps", 50), settings.get("step_ratio", 0.25)
    x, y, labels = work.x.to(device), work.y.to(device), work.y.numpy()
    ours_attack = PGD(steps=steps, step_ratio=ratio, seed=0)
    ours, ref = time_pair(lambda: ours_attack(work.model, x, y, eps),
                          lambda: torchattacks_pgd(work.model, eps, steps, ratio, True)(x, y), work.device,
                          work.repeats)
    with frozen_eval(work.model):
        ours_from_x = sign_ascent(work.model, x, cross_entropy(y), eps, steps, ratio * eps, x_init=x, y=y)
    theirs_from_x = torchattacks_pgd(work.model, eps, steps, ratio, False)(x, y)
    robust = {name: predict(work.model, adv, device) == labels for name, adv in
              [("ours", ours.result), ("theirs", ref.result), ("ours_from_x", ours_from_x),
               ("theirs_from_x", theirs_from_x)]}
    only_ours = int((robust["ours_from_x"] & ~robust["theirs_from_x"]).sum())
    acc = {k: float(v.mean()) for k, v in robust.items()}
    details = {"eps": eps, "steps": steps, "step_ratio": ratio, "robust_acc": acc,
               "robust_only_under_ours_from_x": only_ours}
    details["table"] = {"header": ["start", "ours robust acc", "torchattacks robust acc", "robust only under ours"],
                        "rows": [["x itself (same path)", f"{acc['ours_from_x']:.3f}", f"{acc['theirs_from_x']:.3f}",
                                  only_ours],
                                 ["uniform random (timed)", f"{acc['ours']:.3f}", f"{acc['theirs']:.3f}", "-"]]}
    return Comparison("pgd-vs-torchattacks", f"atbench PGD-{steps}", f"torchattacks PGD-{steps}", ours.seconds,
                      ref.seconds, only_ours == 0, details, len(y), ours.peak_mb, ref.peak_mb)


def _autoattack_settings(work: Workload) -> dict:
    for column in work.protocol.columns:
        if column.attack == "autoattack":
            return dict(column.settings)
    raise AtbenchError(f"protocol {work.protocol.id} has no AutoAttack column",
                       "bench the autoattack-adapter case on a protocol with AutoAttack")


def pyautoattack_direct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                        cfg: AutoAttackAdapter.Config) -> torch.Tensor:
    """`pyautoattack.AutoAttack(...).run_standard_evaluation` called directly with the adapter's
    settings `cfg` (the same work as the adapter: EOT samples on version rand), quiet, with
    the caller's random streams untouched; returns the adversarial examples."""
    from pyautoattack import AutoAttack

    devices = [x.device] if x.device.type == "cuda" else []
    with quiet_autoattack(), torch.random.fork_rng(devices=devices):
        aa = AutoAttack(model, device=x.device, eps=eps, norm=cfg.norm, seed=cfg.seed, version=cfg.version)
        if cfg.version == "rand":
            aa.apgd.eot_iter = cfg.eot_samples
        aa.verbose = False
        return aa.run_standard_evaluation(x, y, batch_size=cfg.batch_size)[0]


@BENCH_CASES.register(name="autoattack-adapter")
def autoattack_adapter_vs_direct(work: Workload) -> Comparison:
    """Our AutoAttack adapter (the protocol's AutoAttack settings at its primary eps) against
    `pyautoattack.AutoAttack(...).run_standard_evaluation` called directly with the same model,
    points, eps, norm, version, seed and batch size.

    Not weaker means the two leave exactly the same points robust (the adapter must not change
    AutoAttack's result); the target is an overhead of at most 5% (ratio <= 1.05)."""
    adapter = AutoAttackAdapter(**_autoattack_settings(work))
    cfg, eps = adapter.config, _primary_eps(work)
    x, y = work.x.to(work.device), work.y.to(work.device)
    ours, ref = time_pair(lambda: adapter(work.model, x, y, eps),
                          lambda: pyautoattack_direct(work.model, x, y, eps, cfg), work.device, work.repeats)
    ours_robust = predict(work.model, ours.result, torch.device(work.device)) == work.y.numpy()
    ref_robust = predict(work.model, ref.result, torch.device(work.device)) == work.y.numpy()
    same = bool((ours_robust == ref_robust).all())
    details = {"eps": eps, "version": cfg.version, "adapter_robust_acc": float(ours_robust.mean()),
               "direct_robust_acc": float(ref_robust.mean()), "same_points_robust": same,
               "table": {"header": ["eps", "adapter robust acc", "direct robust acc", "same points robust"],
                         "rows": [[eps, f"{ours_robust.mean():.3f}", f"{ref_robust.mean():.3f}", same]]}}
    return Comparison("autoattack-adapter", "atbench AutoAttack adapter", "pyautoattack called directly",
                      ours.seconds, ref.seconds, same, details, len(y), ours.peak_mb, ref.peak_mb)
