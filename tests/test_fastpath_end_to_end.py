"""The GPU fast path forced on the CPU, end to end through the CLI: `atbench train --fast-path on
--compile` and `atbench eval --fast-path on --eval-precision bf16` on synthetic-tiny (bf16
autocast, channels_last, the data and their augmentation on the device, torch.compile, the bf16
attack search) write a record that validates, is admitted against its flags, says it was made on
the fast path and has sane accuracies; a plain run after it trains again instead of reusing the
fast-path checkpoint, and its record says nothing of a fast path."""
import pytest
import torch

from benchmark.pipeline.fastpath import FAST_PATH_SETTINGS
from tests.fastpath_run import (
    admitted_record,
    check_fast_path_record,
    check_sane_accuracy,
    cli,
    quick_protocol,
    train_json,
)

pytestmark = pytest.mark.system


def test_the_fast_path_trains_and_evaluates_on_the_cpu_and_never_passes_for_plain(in_tmp):
    protocol = quick_protocol(in_tmp)
    torch._dynamo.utils.counters.clear()
    assert cli(in_tmp, "train", "--fast-path", "on", "--compile") == 0
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"], "--compile compiled nothing"
    fast = train_json(in_tmp)
    assert fast["fast_path"] == list(FAST_PATH_SETTINGS)
    assert cli(in_tmp, "eval", "--fast-path", "on", "--eval-precision", "bf16", "--protocol", protocol) == 0
    record = admitted_record(in_tmp, "synthetic-tiny-quick")
    check_fast_path_record(record, list(FAST_PATH_SETTINGS))
    check_sane_accuracy(record)
    assert record["provenance"]["checkpoint_sha256"] == fast["checkpoint_sha256"]

    assert cli(in_tmp, "train") == 0  # --fast-path auto: the plain path on the CPU
    plain = train_json(in_tmp)
    assert plain["fast_path"] == [] and plain["train_key"] != fast["train_key"]
    assert plain["checkpoint_sha256"] != fast["checkpoint_sha256"], "the plain run reused the fast-path checkpoint"
    assert cli(in_tmp, "eval", "--protocol", protocol, "--replace") == 0
    record = admitted_record(in_tmp, "synthetic-tiny-quick")
    assert "fast_path" not in record["provenance"] and record["provenance"]["checkpoint_sha256"] == plain[
        "checkpoint_sha256"]
    check_sane_accuracy(record)
