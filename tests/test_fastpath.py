"""The GPU fast path, exercised on the CPU: its modes, its train key and its train.json field,
each setting trains to the same model as the plain path (up to float rounding), and a
reduced-precision evaluation re-checks in full precision."""
import json
import typing

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.core.errors import AtbenchError
from benchmark.core.registry import TRACKS
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.evaluate import run_protocol
from benchmark.pipeline.fastpath import FAST_PATH_SETTINGS, FastPath, search_model
from benchmark.pipeline.run_files import read_train_result
from benchmark.pipeline.train import bundle_on_device, train_key
from leaderboard.record import FastPathSetting
from tests.fastpath_run import trained_weights
from tests.helpers import tiny_standard_model, white_box_protocol


@pytest.mark.unit
def test_everything_is_on_for_cuda_and_off_for_the_cpu():
    assert FastPath.for_device("cuda:0") == FastPath(data_on_device=True, channels_last=True, bf16=True)
    assert FastPath.for_device("cpu") == FastPath()
    assert FastPath.for_device("cpu", compile=True).compile


@pytest.mark.unit
def test_the_mode_forces_the_fast_path_on_or_off_anywhere():
    on = FastPath.for_device("cpu", mode="on")
    assert on == FastPath(data_on_device=True, channels_last=True, bf16=True)
    assert FastPath.for_device("cuda", mode="off") == FastPath()
    assert on.settings() == ("data_on_device", "channels_last", "bf16") and FastPath().settings() == ()
    assert FastPath.for_device("cpu", compile=True, mode="on").settings() == FAST_PATH_SETTINGS
    assert on.for_evaluation() == FastPath(channels_last=True)
    with pytest.raises(AtbenchError, match="unknown fast-path mode 'fast'"):
        FastPath.for_device("cpu", mode="fast")


@pytest.mark.unit
def test_the_record_format_knows_every_setting():
    assert typing.get_args(FastPathSetting) == FAST_PATH_SETTINGS


@pytest.mark.unit
def test_a_fast_path_run_has_a_train_key_of_its_own_and_a_plain_one_keeps_its_key():
    track = TRACKS.get("synthetic-tiny")
    defense = track.defense("pgd-at")
    plain = train_key(track, defense, 0)
    assert train_key(track, defense, 0, FastPath.for_device("cpu")) == plain
    keys = {train_key(track, defense, 0, FastPath(**{name: True})) for name in FAST_PATH_SETTINGS}
    assert plain not in keys and len(keys) == len(FAST_PATH_SETTINGS)


@pytest.mark.unit
def test_train_json_names_its_fast_path_and_an_older_one_reads_as_plain(tmp_path):
    body = {"checkpoint": "best.pt", "checkpoint_sha256": "0" * 64, "best_epoch": 1, "epochs": 1,
            "best_val_robust_acc": 0.5, "best_val_clean_acc": 0.9, "runtime_s": 1.0, "train_key": "1" * 64}
    path = tmp_path / "train.json"
    path.write_text(json.dumps(body))
    assert read_train_result(path).fast_path == ()
    path.write_text(json.dumps({**body, "fast_path": ["bf16", "compile"]}))
    assert read_train_result(path).fast_path == ("bf16", "compile")
    for bad in (["bf16", "bf16"], ["fp8"], "bf16", [["bf16"]]):
        path.write_text(json.dumps({**body, "fast_path": bad}))
        with pytest.raises(AtbenchError, match="field 'fast_path' must be a list of distinct settings"):
            read_train_result(path)


@pytest.mark.unit
def test_data_moves_to_the_device_except_the_test_split():
    bundle = load_dataset("synthetic")
    moved = bundle_on_device(bundle, torch.device("meta"))
    assert moved.train.x.device.type == "meta" and moved.val.y.device.type == "meta"
    assert moved.test.x.device.type == "cpu" and moved.sha256 == bundle.sha256


@pytest.mark.parametrize("fast", [FastPath(channels_last=True), FastPath(compile=True)],
                         ids=["channels_last", "compile"])
@pytest.mark.system
def test_layout_and_compile_train_the_same_weights(tmp_path, fast):
    _, plain = trained_weights(tmp_path, "plain", FastPath())
    torch._dynamo.utils.counters.clear()
    _, other = trained_weights(tmp_path, "fast", fast)
    assert bool(torch._dynamo.utils.counters["stats"]["unique_graphs"]) == fast.compile
    assert list(other) == list(plain), "checkpoint keys must stay unprefixed (loadable without the fast path)"
    for key in plain:
        torch.testing.assert_close(other[key].contiguous(), plain[key], atol=1e-4, rtol=1e-4)


@pytest.mark.system
def test_bf16_training_learns_as_well(tmp_path):
    plain, _ = trained_weights(tmp_path, "plain", FastPath())
    bf16, weights = trained_weights(tmp_path, "bf16", FastPath(bf16=True))
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


@pytest.mark.unit
def test_bf16_search_is_rechecked_in_full_precision(tmp_path):
    x = torch.full((4, 1, 2, 2), 0.5)
    y = torch.ones(4, dtype=torch.long)
    everyone_broken = (search_model(PrecisionSensitive(), "bf16")(x).argmax(1) == 0).all()
    assert everyone_broken, "bf16 alone would call every point broken"
    result = run_protocol(PrecisionSensitive(), white_box_protocol(tmp_path), x, y, progress=False, precision="bf16")
    for name, flags in result.flags.items():
        assert flags.all(), f"{name}: a bf16-only adversarial example was counted"


@pytest.mark.unit
def test_bf16_search_finds_about_what_fp32_finds(tmp_path):
    model, protocol = tiny_standard_model(), white_box_protocol(tmp_path)
    bundle = load_dataset("synthetic")
    x, y = bundle.test.x[:100], bundle.test.y[:100]
    fp32 = run_protocol(model, protocol, x, y, progress=False)
    bf16 = run_protocol(model, protocol, x, y, progress=False, precision="bf16")
    for name in fp32.flags:
        assert abs(fp32.flags[name].mean() - bf16.flags[name].mean()) <= 0.05, name
    np.testing.assert_array_equal(fp32.flags["clean"], bf16.flags["clean"])


@pytest.mark.unit
def test_unknown_precision_is_a_user_error():
    with pytest.raises(AtbenchError, match="unknown evaluation precision 'fp16'"):
        search_model(nn.Identity(), "fp16")


@pytest.mark.system
def test_a_bf16_evaluation_is_marked_in_its_record_and_never_reused_as_fp32(in_tmp, capsys):
    """Breaks if a bf16 record is not marked, if an fp32 evaluation of the same defense and seed
    replaces it without --replace (or is refused only after the work), if the two cannot be kept
    side by side in two records folders, or if --replace does not replace it."""
    from benchmark.commands.cli import main

    base = ["run", "--track", "synthetic-tiny", "--defense", "standard", "-q", "--jobs", "1"]
    published = in_tmp / "leaderboard/records/synthetic-tiny/standard-seed0.json"
    assert main([*base, "--eval-precision", "bf16"]) == 0
    bf16 = published.read_bytes()
    assert all(text.endswith("[bf16 search, fp32 check]") for text in json.loads(bf16)["attacks"].values())
    board = json.loads((in_tmp / "leaderboard/boards/synthetic-tiny.json").read_text())
    assert "attacks searched in bf16" in board["statistics"]["evaluation"]
    run_record = in_tmp / "runs/synthetic-tiny/standard/seed0/record.json"
    evaluated = run_record.read_bytes()
    capsys.readouterr()
    assert main(base) == 2  # refused before any work: the run folder's record is the bf16 one still
    err = capsys.readouterr().err
    assert str(published.relative_to(in_tmp)) in err and "bf16" in err and "fp32" in err and "--replace" in err
    assert published.read_bytes() == bf16 and run_record.read_bytes() == evaluated
    assert main([*base, "--records-dir", "fp32/records", "--boards-dir", "fp32/boards"]) == 0
    fp32 = json.loads((in_tmp / "fp32/records/synthetic-tiny/standard-seed0.json").read_text())
    assert not any("bf16" in text for text in fp32["attacks"].values()) and published.read_bytes() == bf16
    assert main(["eval", *base[1:], "--replace"]) == 0
    record = json.loads(published.read_text())
    assert not any("bf16" in text for text in record["attacks"].values())
