"""The GPU fast path on a CUDA device (`pytest -m gpu`; skipped without one): `atbench train` and
`atbench eval` on `--device cuda` with the default `--fast-path auto`, `--compile` and the bf16
attack search under the track's own protocol (AutoAttack included) write a record that
validates, is admitted and says it was made on the fast path; the data and their augmentation
live on the device and augment as on the CPU; channels_last and torch.compile train the same
weights as the plain path (TF32 off, so both sides compute in fp32); bf16 training learns as
well as fp32 training."""
import pytest
import torch

from benchmark.core.registry import TRACKS
from benchmark.pipeline.data import augment, load_dataset
from benchmark.pipeline.fastpath import FAST_PATH_SETTINGS, FastPath
from benchmark.pipeline.train import bundle_on_device, seeded_generator
from tests.fastpath_run import (
    TRACK,
    admitted_record,
    check_fast_path_record,
    check_sane_accuracy,
    cli,
    train_json,
    trained_weights,
)

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() "
                                                                      "is False)")]


@pytest.fixture
def fp32_on_cuda():
    """Full fp32 matmuls and convolutions (no TF32) during the test, so two layouts differ by
    rounding only (torch's backend flags are not plain attributes: saved and restored here)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_the_fast_path_trains_and_evaluates_on_cuda(in_tmp):
    assert cli(in_tmp, "train", "--device", "cuda", "--compile") == 0
    assert train_json(in_tmp)["fast_path"] == list(FAST_PATH_SETTINGS)
    assert cli(in_tmp, "eval", "--device", "cuda", "--eval-precision", "bf16") == 0
    record = admitted_record(in_tmp, TRACKS.get(TRACK).protocol)
    check_fast_path_record(record, list(FAST_PATH_SETTINGS))
    check_sane_accuracy(record)
    assert "cuda" in record["provenance"]["device"].lower()


def test_the_data_and_their_augmentation_live_on_the_device():
    bundle = bundle_on_device(load_dataset("synthetic"), torch.device("cuda"))
    assert bundle.train.x.is_cuda and bundle.val.y.is_cuda and not bundle.test.x.is_cuda
    x = bundle.train.x[:64]
    on_device = augment(x, "crop-flip", seeded_generator(0))
    assert on_device.is_cuda
    torch.testing.assert_close(on_device.cpu(), augment(x.cpu(), "crop-flip", seeded_generator(0)), atol=0, rtol=0)


@pytest.mark.parametrize("fast", [FastPath(channels_last=True, data_on_device=True), FastPath(compile=True)],
                         ids=["channels_last+data_on_device", "compile"])
def test_layout_and_compile_train_the_same_weights_on_cuda(tmp_path, fp32_on_cuda, fast):
    _, plain = trained_weights(tmp_path, "plain", FastPath(), "cuda", augmentation="crop-flip")
    _, other = trained_weights(tmp_path, "fast", fast, "cuda", augmentation="crop-flip")
    assert list(other) == list(plain), "checkpoint keys must stay unprefixed (loadable without the fast path)"
    for key in plain:
        torch.testing.assert_close(other[key].contiguous(), plain[key], atol=1e-4, rtol=1e-4)


def test_bf16_training_learns_as_well_on_cuda(tmp_path):
    plain, _ = trained_weights(tmp_path, "plain", FastPath(), "cuda")
    fast, weights = trained_weights(tmp_path, "fast", FastPath.for_device("cuda"), "cuda")
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert abs(fast.best_val_clean_acc - plain.best_val_clean_acc) <= 0.1
    assert abs(fast.best_val_robust_acc - plain.best_val_robust_acc) <= 0.1
