"""tools/gpu_check.sh, the GPU readiness check, without a GPU: the script parses and says it is
no benchmark result, its dry run plans every step (the README's GPU measurements among them)
under `timeout` within its budget and runs nothing, and tools/gpu_rows.py turns `atbench bench
--json` reports into rows of the README's Speed table."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.commands.bench import Comparison, Workload, to_json
from benchmark.pipeline.protocol import load_protocol

pytestmark = pytest.mark.system  # every test runs tools/gpu_check.sh or tools/gpu_rows.py in a process

TOOLS = Path(__file__).resolve().parent.parent / "tools"
SCRIPT, ROWS = TOOLS / "gpu_check.sh", TOOLS / "gpu_rows.py"
STEPS = ["venv", "install", "gpu-tests", "train-synthetic", "at-step", "mnist", "train-mnist", "autoattack",
         "at-step-compile"]


def test_the_script_parses_and_says_it_is_no_benchmark_result():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    assert "NOT a benchmark result" in SCRIPT.read_text()


def test_the_dry_run_plans_every_step_under_timeout_within_the_budget_and_runs_nothing(tmp_path):
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--work", str(tmp_path), "--budget", "300"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    steps = re.findall(r"^\[([\w-]+)\] timeout (\d+) (.*)$", out, re.M)
    assert [name for name, _, _ in steps] == STEPS
    assert all(0 < int(cap) < 300 for _, cap, _ in steps)
    command = {name: text for name, _, text in steps}
    assert command["install"].startswith("env -u PIP_EXTRA_INDEX_URL -u PIP_FIND_LINKS")
    assert command["install"].endswith("pip install --quiet -c constraints.txt -e .[test]")
    assert "-m pytest -m gpu" in command["gpu-tests"]
    assert "bench at-step --track synthetic-tiny --defense pgd-at --device cuda --train-model preact-resnet18" in \
        command["at-step"]
    assert "--compile" in command["at-step-compile"] and "--compile" not in command["at-step"]
    assert 'device="cuda", points=1000' in out and 'run_cases(work, ["autoattack-adapter"])' in out
    assert list(tmp_path.iterdir()) == []


def _report(tmp_path: Path, workload: str, comparison: Comparison) -> Path:
    """`atbench bench --json`'s report of one comparison on a CUDA workload."""
    points = torch.zeros(comparison.images)
    work = Workload(workload, torch.nn.Identity(), load_protocol("synthetic-tiny"), points, points, "cuda")
    path = tmp_path / f"{comparison.case}.json"
    path.write_text(json.dumps(to_json(work, [comparison])))
    return path


def _rows(*args) -> list[str]:
    out = subprocess.run([sys.executable, str(ROWS), *map(str, args)], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_rows_of_the_training_step_and_of_autoattack(tmp_path):
    at_step = Comparison("at-step", "harness PGD-AT step", "plain fp32 loop", 3.0, 4.0, True, {
        "setting": "preact-resnet18, 3x32x32, batch 128, PGD-10 eps 8/255",
        "fast_path": {"data_on_device": True, "channels_last": True, "bf16": True, "compile": False},
        "floor_images_per_s": 2000.0, "peak_dtype": "bfloat16", "peak_tflops": 600.0,
        "seconds_per_cifar10_epoch": {"ours": 390.6, "plain": 520.8, "floor": 25.0}}, 384, 1200.0, 900.0)
    autoattack = Comparison("autoattack-adapter", "atbench AutoAttack adapter", "pyautoattack called directly", 50.0,
                            40.0, False, {"eps": 0.3, "version": "standard"}, 1000, 14.0, 43.0)
    lines = _rows("--device-name", "H100", _report(tmp_path, "pgd-at seed 0", at_step),
                  _report(tmp_path, "mnist-cnn-1epoch pgd-at seed 0", autoattack))
    assert lines == [
        "| device | work | ours | reference | ratio | floor |", "|---|---|---|---|---|---|",
        "| H100 | AT step, preact-resnet18, 3x32x32, batch 128, PGD-10 eps 8/255 (data_on_device, channels_last, "
        "bf16) | 128.0 img/s, 391 s per CIFAR-10 epoch, 1,200 MiB | 96.0 img/s, 521 s (plain fp32 loop), 900 MiB | "
        "0.75 | 2,000.0 img/s, 25 s (bfloat16, 600.00 TFLOP/s) |",
        "| H100 | AutoAttack standard, mnist-cnn-1epoch pgd-at seed 0, 1,000 points, eps 0.3 | 50.0 s (20.0 points/s), "
        "14 MiB | 40.0 s, 43 MiB (pyautoattack called directly) | 1.25 (ours weaker) | - |",
    ]


def test_a_case_without_a_gpu_row_is_refused(tmp_path):
    pgd = Comparison("pgd-vs-torchattacks", "atbench PGD-50", "torchattacks PGD-50", 1.0, 1.0, True, {}, 200)
    out = subprocess.run([sys.executable, str(ROWS), str(_report(tmp_path, "w", pgd))], capture_output=True, text=True)
    assert out.returncode != 0 and "has no GPU row" in out.stderr
