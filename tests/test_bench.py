"""`atbench bench`: every case on tiny models (each is not weaker than its reference), the
report, peak memory, the FLOP model, and the CLI's errors; pytest-benchmark timings of the hot
paths. Timings are measured, never asserted."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from attacks.autoattack import AutoAttackAdapter
from attacks.pgd import PGD
from benchmark.commands.bench import (
    Workload,
    markdown,
    peak_memory,
    run_cases,
    time_pair,
    to_json,
)
from benchmark.commands.bench_cases.evaluation import (
    autoattack_adapter_vs_direct,
    multi_eps_vs_per_eps,
    pgd_vs_torchattacks,
)
from benchmark.commands.bench_cases.training import (
    at_step_vs_plain_loop,
    step_flops_per_image,
)
from benchmark.commands.cli import main
from benchmark.core.errors import AtbenchError
from benchmark.core.registry import TRACKS
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.evaluate import run_protocol
from benchmark.pipeline.fastpath import FastPath
from benchmark.pipeline.protocol import load_protocol
from benchmark.pipeline.train import apply_step, harness_loss, seeded_generator
from defenses.base import TrainContext
from defenses.pgd_at import PGDAT
from tests.helpers import tiny_mlp, tiny_standard_model, white_box_protocol


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    bundle = load_dataset("synthetic")
    # eps where the tiny model is partly robust, so survivors and inherited breaks both occur
    protocol = dataclasses.replace(white_box_protocol(tmp_path_factory.mktemp("protocol")), eps=("0.1", "0.13", "0.16"))
    return Workload("tiny", tiny_standard_model(), protocol, bundle.test.x[:80], bundle.test.y[:80], "cpu",
                    TRACKS.get("synthetic-tiny"))


@pytest.fixture(scope="module")
def ten_class_workload():
    """A 10-class model (AutoAttack's targeted attacks need 9 targets) at an eps where it is
    partly robust, under the synthetic-tiny protocol (AutoAttack included)."""
    model, x, y = tiny_mlp(60)
    protocol = dataclasses.replace(load_protocol("synthetic-tiny"), eps=("0.05",), primary_eps="0.05")
    return Workload("tiny-mlp", model, protocol, x, y, "cpu", TRACKS.get("synthetic-tiny"))


def test_multi_eps_is_never_weaker_than_each_eps_from_scratch(workload):
    result = multi_eps_vs_per_eps(workload)
    columns = result.details["columns"]
    assert set(columns) == {f"{c.column}@{e}" for c in workload.protocol.columns for e in workload.protocol.eps}
    assert result.not_weaker
    for values in columns.values():
        assert values["robust_only_in_multi"] == 0
        assert values["multi_eps"] <= values["per_eps"]
    smallest = workload.protocol.eps[0]  # at the smallest eps both attack every point alike
    for c in workload.protocol.columns:
        assert columns[f"{c.column}@{smallest}"]["multi_eps"] == columns[f"{c.column}@{smallest}"]["per_eps"]
    accuracy = [columns[f"pgd@{e}"]["per_eps"] for e in workload.protocol.eps]
    assert accuracy[0] > accuracy[1] > accuracy[2] > 0  # the comparison is not trivial
    assert result.ours_s > 0 and result.reference_s > 0


def test_our_pgd_follows_torchattacks_path_and_never_leaves_more_points_robust(workload):
    result = pgd_vs_torchattacks(workload)
    acc = result.details["robust_acc"]
    assert result.not_weaker and result.details["robust_only_under_ours_from_x"] == 0
    assert acc["ours_from_x"] <= acc["theirs_from_x"]
    assert 0 < acc["theirs"] < 1 and result.images == len(workload.y)  # the comparison is not trivial


def test_autoattack_adapter_leaves_the_same_points_robust_as_pyautoattack_direct(ten_class_workload):
    result = autoattack_adapter_vs_direct(ten_class_workload)
    assert result.not_weaker and result.details["same_points_robust"]
    assert 0 < result.details["direct_robust_acc"] < 1
    assert result.details["adapter_robust_acc"] == result.details["direct_robust_acc"]


def test_harness_at_step_attacks_as_hard_as_the_plain_loop(workload):
    result = at_step_vs_plain_loop(workload)
    gain = result.details["adversarial_loss_gain"]
    assert result.not_weaker and gain["ours"] > 0 and gain["plain"] > 0
    assert result.images == 3 * TRACKS.get("synthetic-tiny").batch_size
    assert result.details["gflop_per_trained_image"] < result.details["plain_gflop_per_trained_image"]
    assert result.details["peak_tflops"] > 0 and result.details["floor_images_per_s"] > 0


def test_flop_model_matches_the_preact_resnet18_anchor():
    """PreActResNet-18's forward is about 1.11 GFLOP per 32x32 image (research/performance.md);
    a PGD-10 AT step is then 23 forwards with input-only attack gradients, 33 without."""
    from torch.utils.flop_counter import FlopCounterMode

    from benchmark.models.architectures import build_model

    model = build_model("preact-resnet18", 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, 32, 32))
    assert counter.get_total_flops() / 1e9 == pytest.approx(1.11, abs=0.02)
    assert step_flops_per_image(1.0, 10) == (23.0, 33.0)


def test_peak_memory_sees_a_large_temporary_tensor():
    def allocate():
        t = torch.ones(64 * 2**20 // 4)  # 64 MiB, freed on return
        return float(t.sum())

    with peak_memory("cpu") as peak:
        allocate()
    assert 60 <= peak[0] < 200
    ours, ref = time_pair(lambda: 1, allocate, "cpu", repeats=2)
    assert ours.result == 1 and ref.result == 64 * 2**20 // 4 and ref.peak_mb >= 60 > ours.peak_mb


def test_report_lists_every_case_and_column(workload):
    results = run_cases(workload, ["multi-eps", "at-step"])
    text = markdown(workload, results)
    assert "| multi-eps |" in text and f"pgd@{workload.protocol.eps[-1]}" in text and "| at-step |" in text
    body = json.loads(json.dumps(to_json(workload, results)))
    assert body["cases"][0]["ratio"] == pytest.approx(results[0].ours_s / results[0].reference_s)
    with pytest.raises(AtbenchError, match="unknown bench case"):
        run_cases(workload, ["nope"])


def test_bench_without_a_trained_run_names_the_fix(tmp_path, capsys):
    assert main(["bench", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no trained pgd-at" in err and "atbench train" in err


def test_benchmark_multi_eps_evaluation(benchmark, workload):
    """Timing of the multi-eps protocol run on the tiny model (pytest-benchmark)."""
    result = benchmark.pedantic(run_protocol, args=(workload.model, workload.protocol, workload.x, workload.y),
                                kwargs={"progress": False}, rounds=2, iterations=1)
    assert set(result.flags) >= {"clean"}


def test_benchmark_pgd_attack(benchmark, workload):
    """Timing of our PGD-50 on the tiny model (pytest-benchmark)."""
    attack = PGD(steps=50)
    x_adv = benchmark.pedantic(attack, args=(workload.model, workload.x, workload.y, 0.13), rounds=3, iterations=1)
    assert x_adv.shape == workload.x.shape


def test_benchmark_harness_at_step(benchmark):
    """Timing of one harness PGD-AT step (PGD-3, batch 64) on the synthetic-tiny track (pytest-benchmark)."""
    from benchmark.models.architectures import build_model

    bundle, track = load_dataset("synthetic"), TRACKS.get("synthetic-tiny")
    model = build_model(track.model, bundle)
    optimizer = torch.optim.Adam(model.parameters(), lr=track.lr)
    ctx = TrainContext(epoch=0, step=0, device=torch.device("cpu"), eps=track.eps, attack_steps=track.attack_steps,
                       step_size=track.step_ratio * track.eps, num_classes=bundle.num_classes,
                       generator=seeded_generator(0))
    x, y = bundle.train.x[: track.batch_size], bundle.train.y[: track.batch_size]

    def step():
        apply_step(model, optimizer, harness_loss(model, PGDAT(), x, y, ctx, FastPath()), 0.0)

    benchmark.pedantic(step, rounds=5, iterations=1)


def test_benchmark_autoattack_adapter(benchmark, ten_class_workload):
    """Timing of the AutoAttack adapter (standard) on the tiny 10-class model (pytest-benchmark)."""
    work = ten_class_workload
    x_adv = benchmark.pedantic(AutoAttackAdapter(), args=(work.model, work.x, work.y, 0.05), rounds=1, iterations=1)
    assert x_adv.shape == work.x.shape
