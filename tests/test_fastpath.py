"""The GPU fast path, exercised on the CPU: each setting trains to the same model as the plain
path (up to float rounding), and a reduced-precision evaluation re-checks in full precision."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.core.errors import AtbenchError
from benchmark.core.io import load_checkpoint
from benchmark.core.registry import TRACKS
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.evaluate import run_protocol
from benchmark.pipeline.fastpath import FastPath, search_model
from benchmark.pipeline.train import bundle_on_device, train
from tests.helpers import tiny_standard_model, white_box_protocol


def test_everything_is_on_for_cuda_and_off_for_the_cpu():
    assert FastPath.for_device("cuda:0") == FastPath(data_on_device=True, channels_last=True, bf16=True)
    assert FastPath.for_device("cpu") == FastPath()
    assert FastPath.for_device("cpu", compile=True).compile


def test_data_moves_to_the_device_except_the_test_split():
    bundle = load_dataset("synthetic")
    moved = bundle_on_device(bundle, torch.device("meta"))
    assert moved.train.x.device.type == "meta" and moved.val.y.device.type == "meta"
    assert moved.test.x.device.type == "cpu" and moved.sha256 == bundle.sha256


def _trained_weights(tmp_path, name, fast):
    result = train(TRACKS.get("synthetic-tiny"), TRACKS.get("synthetic-tiny").defense("pgd-at"), 0,
                   tmp_path / name, progress=False, fast=fast)
    return result, load_checkpoint(result.checkpoint, result.checkpoint_sha256)["model"]


@pytest.mark.parametrize("fast", [FastPath(channels_last=True), FastPath(compile=True)],
                         ids=["channels_last", "compile"])
def test_layout_and_compile_train_the_same_weights(tmp_path, fast):
    _, plain = _trained_weights(tmp_path, "plain", FastPath())
    torch._dynamo.utils.counters.clear()
    _, other = _trained_weights(tmp_path, "fast", fast)
    assert bool(torch._dynamo.utils.counters["stats"]["unique_graphs"]) == fast.compile
    assert list(other) == list(plain), "checkpoint keys must stay unprefixed (loadable without the fast path)"
    for key in plain:
        torch.testing.assert_close(other[key].contiguous(), plain[key], atol=1e-4, rtol=1e-4)


def test_bf16_training_learns_as_well(tmp_path):
    plain, _ = _trained_weights(tmp_path, "plain", FastPath())
    bf16, weights = _trained_weights(tmp_path, "bf16", FastPath(bf16=True))
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert abs(bf16.best_val_clean_acc - plain.best_val_clean_acc) <= 0.1
    assert abs(bf16.best_val_robust_acc - plain.best_val_robust_acc) <= 0.1


class PrecisionSensitive(nn.Module):
    """Two logits 1e-4 apart that bf16 rounds to the same value (so argmax picks class 0)
    while fp32 picks class 1; the input barely moves them, so no attack can flip fp32."""

    def forward(self, x):
        base = 1.0 + 1e-6 * x.flatten(1).mean(1, keepdim=True)
        logits = torch.cat([base - 1e-4, base], dim=1)
        return nn.functional.linear(logits, torch.eye(2))


def test_bf16_search_is_rechecked_in_full_precision(tmp_path):
    x = torch.full((4, 1, 2, 2), 0.5)
    y = torch.ones(4, dtype=torch.long)
    everyone_broken = (search_model(PrecisionSensitive(), "bf16")(x).argmax(1) == 0).all()
    assert everyone_broken, "bf16 alone would call every point broken"
    result = run_protocol(PrecisionSensitive(), white_box_protocol(tmp_path), x, y, progress=False, precision="bf16")
    for name, flags in result.flags.items():
        assert flags.all(), f"{name}: a bf16-only adversarial example was counted"


def test_bf16_search_finds_about_what_fp32_finds(tmp_path):
    model, protocol = tiny_standard_model(), white_box_protocol(tmp_path)
    bundle = load_dataset("synthetic")
    x, y = bundle.test.x[:100], bundle.test.y[:100]
    fp32 = run_protocol(model, protocol, x, y, progress=False)
    bf16 = run_protocol(model, protocol, x, y, progress=False, precision="bf16")
    for name in fp32.flags:
        assert abs(fp32.flags[name].mean() - bf16.flags[name].mean()) <= 0.05, name
    np.testing.assert_array_equal(fp32.flags["clean"], bf16.flags["clean"])


def test_unknown_precision_is_a_user_error():
    with pytest.raises(AtbenchError, match="unknown evaluation precision 'fp16'"):
        search_model(nn.Identity(), "fp16")


def test_a_bf16_evaluation_is_marked_in_its_record_and_never_reused_as_fp32(in_tmp):
    from benchmark.commands.cli import main

    base = ["run", "--track", "synthetic-tiny", "--defense", "standard", "-q", "--jobs", "1"]
    assert main([*base, "--eval-precision", "bf16"]) == 0
    record = json.loads(next((in_tmp / "leaderboard/records/synthetic-tiny").glob("standard-seed0.json")).read_text())
    assert all(text.endswith("[bf16 search, fp32 check]") for text in record["attacks"].values())
    assert main(base) == 0
    record = json.loads(next((in_tmp / "leaderboard/records/synthetic-tiny").glob("standard-seed0.json")).read_text())
    assert not any("bf16" in text for text in record["attacks"].values())
