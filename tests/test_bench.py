"""`atbench bench`: every case on tiny models (each is not weaker than its reference), the
report, peak memory, the FLOP model, and the CLI's errors (the pytest-benchmark timings of the
hot paths: tests/test_bench_timings.py). Timings are measured, never asserted."""
from __future__ import annotations

import json

import pytest
import torch

from benchmark.commands.bench import markdown, peak_memory, run_cases, time_pair, to_json
from benchmark.commands.bench_cases.evaluation import (
    autoattack_adapter_vs_direct,
    multi_eps_vs_per_eps,
    pgd_vs_torchattacks,
)
from benchmark.commands.bench_cases.training import at_step_vs_plain_loop, step_flops_per_image
from benchmark.commands.cli import main
from benchmark.core.errors import AtbenchError
from benchmark.core.registry import TRACKS




@pytest.mark.unit
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


@pytest.mark.unit
def test_our_pgd_follows_torchattacks_path_and_never_leaves_more_points_robust(workload):
    result = pgd_vs_torchattacks(workload)
    acc = result.details["robust_acc"]
    assert result.not_weaker and result.details["robust_only_under_ours_from_x"] == 0
    assert acc["ours_from_x"] <= acc["theirs_from_x"]
    assert 0 < acc["theirs"] < 1 and result.images == len(workload.y)  # the comparison is not trivial


@pytest.mark.unit
def test_autoattack_adapter_leaves_the_same_points_robust_as_pyautoattack_direct(ten_class_workload):
    result = autoattack_adapter_vs_direct(ten_class_workload)
    assert result.not_weaker and result.details["same_points_robust"]
    assert 0 < result.details["direct_robust_acc"] < 1
    assert result.details["adapter_robust_acc"] == result.details["direct_robust_acc"]


@pytest.mark.unit
def test_harness_at_step_attacks_as_hard_as_the_plain_loop(workload):
    result = at_step_vs_plain_loop(workload)
    gain = result.details["adversarial_loss_gain"]
    assert result.not_weaker and gain["ours"] > 0 and gain["plain"] > 0
    assert result.images == 3 * TRACKS.get("synthetic-tiny").batch_size
    assert result.details["gflop_per_trained_image"] < result.details["plain_gflop_per_trained_image"]
    assert result.details["peak_tflops"] > 0 and result.details["floor_images_per_s"] > 0


@pytest.mark.unit
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


@pytest.mark.unit
def test_peak_memory_sees_a_large_temporary_tensor():
    def allocate():
        t = torch.ones(64 * 2**20 // 4)  # 64 MiB, freed on return
        return float(t.sum())

    with peak_memory("cpu") as peak:
        allocate()
    assert 60 <= peak[0] < 200
    ours, ref = time_pair(lambda: 1, allocate, "cpu", repeats=2)
    assert ours.result == 1 and ref.result == 64 * 2**20 // 4 and ref.peak_mb >= 60 > ours.peak_mb


@pytest.mark.unit
def test_report_lists_every_case_and_column(workload):
    results = run_cases(workload, ["multi-eps", "at-step"])
    text = markdown(workload, results)
    assert "| multi-eps |" in text and f"pgd@{workload.protocol.eps[-1]}" in text and "| at-step |" in text
    body = json.loads(json.dumps(to_json(workload, results)))
    assert body["cases"][0]["ratio"] == pytest.approx(results[0].ours_s / results[0].reference_s)
    with pytest.raises(AtbenchError, match="unknown bench case"):
        run_cases(workload, ["nope"])


@pytest.mark.system
def test_bench_without_a_trained_run_names_the_fix(tmp_path, capsys):
    assert main(["bench", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no trained pgd-at" in err and "atbench train" in err
