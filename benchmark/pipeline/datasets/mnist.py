"""The full MNIST (60,000 training and 10,000 test digits) read from its four idx .gz files in
`<data_dir>/mnist/`, as `atbench data download mnist` leaves them."""
from __future__ import annotations

import gzip
import zlib
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
from benchmark.pipeline.datasets.sources import SOURCES

MNIST_VAL_SIZE = 5000
"""Validation images carved out of the 60,000 training ones (capped at 10% of them)."""
_IMAGES_MAGIC, _LABELS_MAGIC = 0x0803, 0x0801  # idx: unsigned bytes, 3 dimensions / 1 dimension
_SIDE = 28


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """An idx file (gzip-compressed): big-endian int32 magic and dimensions, then uint8 values."""
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise malformed(path, f"cannot be decompressed ({type(exc).__name__}: {exc})") from exc
    header = 4 * (1 + ndim)
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        raise malformed(path, f"not an idx file of {ndim}-dimensional unsigned bytes (magic {magic:#06x})")
    shape = tuple(int.from_bytes(data[4 * i : 4 * i + 4], "big") for i in range(1, ndim + 1))
    if len(data) != header + int(np.prod(shape)):
        raise malformed(path, f"holds {len(data) - header} values, its header says {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, 28, 28) uint8 and int64 labels of `<prefix>-{images,labels}-idx*-ubyte.gz`."""
    images_path, labels_path = folder / f"{prefix}-images-idx3-ubyte.gz", folder / f"{prefix}-labels-idx1-ubyte.gz"
    images = _read_idx(images_path, _IMAGES_MAGIC, 3)
    if images.shape[1:] != (_SIDE, _SIDE):
        raise malformed(images_path, f"expected {_SIDE}x{_SIDE} images, found {images.shape[1:]}")
    labels = checked_labels(_read_idx(labels_path, _LABELS_MAGIC, 1), 10, len(images), labels_path)
    return images[:, None], labels


@DATASETS.register(name="mnist")
def load_mnist(data_dir: Path) -> DataBundle:
    """The full MNIST from `<data_dir>/mnist/` (the four idx .gz files), 1x28x28, pixels / 255:
    a stratified validation part of 5000 images (`SPLIT_SEED`; at most 10% of the training
    images) carved out of the 60,000 training ones, test = the 10,000 test images."""
    source = SOURCES["mnist"]
    folder = Path(data_dir) / source.folder
    if not all((folder / m).is_file() for m in source.members):
        raise missing_data_error("mnist", data_dir)
    images, labels = _read_pair(folder, "train")
    parts = train_val_parts(images, labels, min(MNIST_VAL_SIZE, len(labels) // 10))
    parts["test"] = _read_pair(folder, "t10k")
    return build_bundle("mnist", parts, DIGIT_NAMES, 255.0)
