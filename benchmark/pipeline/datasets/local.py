"""Data sets read from their standard files in a local folder: CIFAR-10 and CIFAR-100 (the
python pickles) and SVHN (.mat). Pickles are read by an arrays-only unpickler, so a data file
cannot run code. Nothing is downloaded; a missing file is a clear error saying where to put it."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from benchmark.core.registry import DATASETS
from benchmark.pipeline.data import (
    DIGIT_NAMES,
    DataBundle,
    build_bundle,
    checked_labels,
    malformed,
    train_val_parts,
)
from benchmark.pipeline.datasets.download import missing_data_error

CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
_SAFE_PICKLE_GLOBALS = frozenset(  # what numpy arrays in Python 2 and 3 pickles need, nothing more
    {(f"numpy.{core}.{module}", name) for core in ("core", "_core")
     for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))}
    | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
)


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only, so a data file cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _SAFE_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_pickle_dict(path: Path) -> dict:
    """Load a pickled dict (Python 2 or 3, `encoding="latin1"`), with `str` keys."""
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnlyUnpickler(f, encoding="latin1").load()
    except Exception as exc:  # pickle raises many types on bad input
        raise malformed(path, f"cannot be unpickled ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise malformed(path, f"expected a pickled dict, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _dict_field(record: dict, key: str, path: Path):
    if key not in record:
        raise malformed(path, f"key {key!r} missing (keys: {', '.join(map(str, record))})")
    return record[key]


def _read_cifar_file(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR pickle -> uint8 images (N, 3, 32, 32) and int64 labels."""
    record = _read_pickle_dict(path)
    data = _dict_field(record, "data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (3072,):
        raise malformed(path, "'data' must be a uint8 array of shape (N, 3072)")
    labels = checked_labels(_dict_field(record, label_key, path), num_classes, len(data), path)
    return data.reshape(-1, 3, 32, 32), labels


def _read_label_names(path: Path, key: str) -> tuple[str, ...]:
    names = _dict_field(_read_pickle_dict(path), key, path)
    if not isinstance(names, (list, tuple)) or not names:
        raise malformed(path, f"{key!r} must be a non-empty list of names")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def _require(name: str, folder: Path, files: tuple[str, ...], data_dir: Path) -> None:
    """Raise the missing data set's error (naming the exact download command) unless `folder`
    holds every one of `files`."""
    if not all((folder / f).is_file() for f in files):
        raise missing_data_error(name, data_dir)


@DATASETS.register(name="cifar10")
def load_cifar10(data_dir: Path, *, val_size: int | None = None) -> DataBundle:
    """CIFAR-10 from `<data_dir>/cifar-10-batches-py/` (the python pickles), 3x32x32. The five
    training batches give train and a stratified validation part of `val_size` images (default
    min(1000, 10% of the training images): 1000 on the real data); test = test_batch."""
    folder = Path(data_dir) / "cifar-10-batches-py"
    _require("cifar10", folder, CIFAR10_FILES, data_dir)
    class_names = _read_label_names(folder / "batches.meta", "label_names")
    batches = [_read_cifar_file(folder / f, "labels", len(class_names)) for f in CIFAR10_FILES[:5]]
    images, labels = (np.concatenate(arrays) for arrays in zip(*batches))
    parts = train_val_parts(images, labels, val_size)
    parts["test"] = _read_cifar_file(folder / "test_batch", "labels", len(class_names))
    return build_bundle("cifar10", parts, class_names, 255.0)


@DATASETS.register(name="cifar100")
def load_cifar100(data_dir: Path, *, val_size: int | None = None) -> DataBundle:
    """CIFAR-100 (fine labels) from `<data_dir>/cifar-100-python/`, 3x32x32; validation part
    carved from `train` as in `load_cifar10`."""
    folder = Path(data_dir) / "cifar-100-python"
    _require("cifar100", folder, CIFAR100_FILES, data_dir)
    class_names = _read_label_names(folder / "meta", "fine_label_names")
    parts = train_val_parts(*_read_cifar_file(folder / "train", "fine_labels", len(class_names)), val_size)
    parts["test"] = _read_cifar_file(folder / "test", "fine_labels", len(class_names))
    return build_bundle("cifar100", parts, class_names, 255.0)


def _read_svhn_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN .mat file -> uint8 images (N, 3, 32, 32) and labels 0..9 (the file's 10 is 0)."""
    from scipy.io import loadmat

    try:
        record = loadmat(path)
    except Exception as exc:  # scipy raises several types on bad input
        raise malformed(path, f"cannot be read as a .mat file ({type(exc).__name__}: {exc})") from exc
    images, labels = _dict_field(record, "X", path), _dict_field(record, "y", path)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise malformed(path, f"'X' must be uint8 (32, 32, 3, N), found {images.dtype} {images.shape}")
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if labels.shape != (images.shape[3],) or (len(labels) and (labels.min() < 1 or labels.max() > 10)):
        raise malformed(path, f"'y' must hold {images.shape[3]} labels in 1..10, found shape {labels.shape}")
    return images.transpose(3, 2, 0, 1), labels % 10


@DATASETS.register(name="svhn")
def load_svhn(data_dir: Path, *, val_size: int | None = None) -> DataBundle:
    """SVHN (cropped digits) from `<data_dir>/svhn/{train,test}_32x32.mat`, 3x32x32; validation
    part carved from the training file as in `load_cifar10`."""
    folder = Path(data_dir) / "svhn"
    _require("svhn", folder, SVHN_FILES, data_dir)
    parts = train_val_parts(*_read_svhn_file(folder / "train_32x32.mat"), val_size)
    parts["test"] = _read_svhn_file(folder / "test_32x32.mat")
    return build_bundle("svhn", parts, DIGIT_NAMES, 255.0)
