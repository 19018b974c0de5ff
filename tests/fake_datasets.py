"""Small, seeded files in the real formats of the downloadable data sets, for tests and CI:
CIFAR-10/100 Python-2-style pickles packed in a tar.gz with the real member layout, SVHN MATLAB 5
.mat files (X uint8 (32, 32, 3, N), y uint8 (N, 1) in 1..10) and MNIST idx .gz files.

Each builder returns {file name as served: FakeFile(bytes, sha256)}; the same seed gives the same
bytes. `write_cifar10` writes a tiny CIFAR-10 into a folder, archived or already extracted.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.io

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_FOLDER, CIFAR100_FOLDER = "cifar-10-batches-py", "cifar-100-python"
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
               "t10k-labels-idx1-ubyte.gz")


class FakeFile(NamedTuple):
    """A file's bytes and their sha256."""

    data: bytes
    sha256: str


def fake_file(data: bytes) -> FakeFile:
    """`data` with its sha256."""
    return FakeFile(data, hashlib.sha256(data).hexdigest())


def _images_and_labels(rng: np.random.Generator, n: int, num_classes: int,
                       shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """`n` random uint8 images of `shape` and shuffled labels with every class as often as `n` allows."""
    labels = rng.permutation(np.arange(n) % num_classes)
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), labels


def tar_gz(members: dict[str, bytes], folders: tuple[str, ...] = ()) -> bytes:
    """A gzip-compressed tar holding `folders` (folder entries) then `members` (regular files), in
    that order, with fixed times so that equal input gives equal bytes."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _py2_pickle(obj: object) -> bytes:
    """Pickled like the real CIFAR files: protocol 2, byte-string keys and names."""
    return pickle.dumps(obj, protocol=2)


def _cifar_record(images: np.ndarray, labels: dict[str, np.ndarray], batch_label: str) -> dict:
    record = {b"batch_label": batch_label.encode(), b"data": images.reshape(len(images), -1),
              b"filenames": [f"image_{i:05d}.png".encode() for i in range(len(images))]}
    record.update({key.encode(): values.tolist() for key, values in labels.items()})
    return record


def cifar10_members(n_train: int, n_test: int, seed: int) -> dict[str, bytes]:
    """The extracted CIFAR-10 files (path inside the archive -> bytes): five training batches
    sharing `n_train` images, `test_batch`, `batches.meta` and `readme.html`."""
    rng = np.random.default_rng(seed)
    images, labels = _images_and_labels(rng, n_train, 10, (3, 32, 32))
    members = {}
    for i, index in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        record = _cifar_record(images[index], {"labels": labels[index]}, f"training batch {i} of 5")
        members[f"{CIFAR10_FOLDER}/data_batch_{i}"] = _py2_pickle(record)
    test_images, test_labels = _images_and_labels(rng, n_test, 10, (3, 32, 32))
    members[f"{CIFAR10_FOLDER}/test_batch"] = _py2_pickle(
        _cifar_record(test_images, {"labels": test_labels}, "testing batch 1 of 1"))
    members[f"{CIFAR10_FOLDER}/batches.meta"] = _py2_pickle(
        {b"num_cases_per_batch": -(-n_train // 5), b"label_names": [n.encode() for n in CIFAR10_NAMES],
         b"num_vis": 3072})
    members[f"{CIFAR10_FOLDER}/readme.html"] = b"<html>a small fake CIFAR-10 for tests</html>\n"
    return members


def cifar10_files(n_train: int, n_test: int, seed: int) -> dict[str, FakeFile]:
    """{"cifar-10-python.tar.gz": ...}: `cifar10_members` packed like the real archive."""
    return {"cifar-10-python.tar.gz": fake_file(tar_gz(cifar10_members(n_train, n_test, seed), (CIFAR10_FOLDER,)))}


def write_cifar10(folder: str | Path, n_train: int, n_test: int, seed: int,
                  extracted: bool = False) -> dict[str, FakeFile]:
    """Write a tiny CIFAR-10 into `folder`: the archive `cifar-10-python.tar.gz`, or with `extracted`
    the files a loader reads (`folder/cifar-10-batches-py/...`, so that `folder` is a data folder).
    Returns {path relative to `folder`: FakeFile}."""
    files = ({name: fake_file(data) for name, data in cifar10_members(n_train, n_test, seed).items()} if extracted
             else cifar10_files(n_train, n_test, seed))
    for name, file in files.items():
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(file.data)
    return files


def cifar100_files(n_train: int, n_test: int, seed: int) -> dict[str, FakeFile]:
    """{"cifar-100-python.tar.gz": ...}: `train`, `test` and `meta` (100 fine, 20 coarse classes)
    in `cifar-100-python/`, like the real archive."""
    rng = np.random.default_rng(seed)
    members = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, fine = _images_and_labels(rng, n, 100, (3, 32, 32))
        record = _cifar_record(images, {"fine_labels": fine, "coarse_labels": fine // 5}, split)
        members[f"{CIFAR100_FOLDER}/{split}"] = _py2_pickle(record)
    members[f"{CIFAR100_FOLDER}/meta"] = _py2_pickle(
        {b"fine_label_names": [f"fine_{i:02d}".encode() for i in range(100)],
         b"coarse_label_names": [f"coarse_{i:02d}".encode() for i in range(20)]})
    return {"cifar-100-python.tar.gz": fake_file(tar_gz(members, (CIFAR100_FOLDER,)))}


def _mat5(arrays: dict[str, np.ndarray]) -> bytes:
    """A MATLAB 5 .mat file, its header's creation time replaced by a fixed text."""
    out = io.BytesIO()
    scipy.io.savemat(out, arrays, format="5")
    data = bytearray(out.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, a small fake SVHN for tests".ljust(116)
    return bytes(data)


def svhn_files(n_train: int, n_test: int, seed: int) -> dict[str, FakeFile]:
    """{"train_32x32.mat", "test_32x32.mat"}: X uint8 (32, 32, 3, N), y uint8 (N, 1) in 1..10
    (10 is the digit 0), as in the real files."""
    rng = np.random.default_rng(seed)
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = _images_and_labels(rng, n, 10, (32, 32, 3))
        y = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(n, 1)
        x = np.ascontiguousarray(images.transpose(1, 2, 3, 0))
        files[f"{split}_32x32.mat"] = fake_file(_mat5({"X": x, "y": y}))
    return files


def idx_gz(values: np.ndarray) -> bytes:
    """An idx file of unsigned bytes (magic 0x08, the number of dimensions, big-endian int32
    dimensions), gzip-compressed with a fixed time."""
    header = bytes([0, 0, 0x08, values.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in values.shape)
    return gzip.compress(header + values.astype(np.uint8).tobytes(), mtime=0)


def mnist_files(n_train: int, n_test: int, seed: int) -> dict[str, FakeFile]:
    """The four MNIST idx .gz files: 28x28 uint8 images and labels 0..9."""
    rng = np.random.default_rng(seed)
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = _images_and_labels(rng, n, 10, (28, 28))
        files[f"{prefix}-images-idx3-ubyte.gz"] = fake_file(idx_gz(images))
        files[f"{prefix}-labels-idx1-ubyte.gz"] = fake_file(idx_gz(labels))
    return files
