"""Data sets: `load_dataset` (the loaders registered in `DATASETS` live in
`benchmark.pipeline.datasets`), seeded stratified splits, batching and augmentation.

Every loader returns a `DataBundle` of float32 NCHW splits in [0, 1]. Embedded data sets (`mnist5k`,
`digits`, `synthetic`) need no files; `mnist`, `cifar10`, `cifar100` and `svhn` read the standard
files from a local data folder (`--data-dir` / `$ATBENCH_DATA_DIR`), which `atbench data download`
fills; loading never downloads anything.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.core.errors import AtbenchError
from benchmark.core.registry import DATASETS
from benchmark.core.workspace import default

logger = logging.getLogger(__name__)

SPLIT_SEED = 0
"""Seed of every train/validation/test split drawn by the loaders."""
MNIST5K_SPLIT_SIZES = {"train": 4000, "val": 500, "test": 500}
DIGITS_SPLIT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}
SYNTHETIC_SPLIT_SIZES = {"train": 400, "val": 100, "test": 100}
DEFAULT_VAL_SIZE = 1000
"""Validation images carved out of the CIFAR/SVHN training files (capped at 10% of them)."""
AUGMENTATIONS = ("none", "crop-flip")
CROP_PADDING = 4
DATA_DIR_ENV = "ATBENCH_DATA_DIR"

DIGIT_NAMES = tuple(str(d) for d in range(10))


@dataclass(frozen=True, eq=False)
class Split:
    """One part of a data set: `x` float32 (N, C, H, W) in [0, 1], `y` int64 (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32 or self.x.dim() != 4:
            raise ValueError(f"Split.x must be float32 N,C,H,W, got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.dtype != torch.int64 or tuple(self.y.shape) != (len(self.x),):
            raise ValueError(f"Split.y must be int64 ({len(self.x)},), got {self.y.dtype} {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, eq=False)
class DataBundle:
    """A loaded data set. `mean`/`std` are the per-channel statistics of the train split;
    `sha256` hashes the class names and the content of every split (so it changes with the data
    and with the split indices). The tensors are shared by every caller of `load_dataset`:
    never modify them in place."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    class_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sha256: str


def default_data_dir() -> Path:
    """The folder holding local data sets: `$ATBENCH_DATA_DIR` if set, else the workspace's
    `./data` (`benchmark.core.workspace`)."""
    return Path(os.environ.get(DATA_DIR_ENV) or default("data"))


def load_dataset(name: str, data_dir: str | Path | None = None) -> DataBundle:
    """Load the data set registered as `name`, reading local files under `data_dir`
    (default: `default_data_dir()`). Results are cached per (name, resolved folder)."""
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    return _load_cached(name, str(folder.expanduser().resolve()))


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, data_dir: str) -> DataBundle:
    bundle = DATASETS.get(name)(Path(data_dir))
    logger.info("loaded %s: train %d, val %d, test %d, sha256 %s", name, len(bundle.train),
                len(bundle.val), len(bundle.test), bundle.sha256[:12])
    return bundle


def stratified_split(
    y: np.ndarray, sizes: Mapping[str, int | float], seed: int
) -> dict[str, np.ndarray]:
    """Split the indices of `y` into named parts, stratified by class and seeded.

    Args:
        y: integer labels, shape (N,).
        sizes: part name -> number of points (ints, summing to at most N; leftover points are
            left out) or fraction (floats summing to 1). Parts are filled in the given order, each
            drawing from every class in proportion to what is left of it (largest remainders,
            ties to the lower class), so balanced data with divisible sizes splits exactly.
        seed: seed of the per-class shuffles.

    Returns:
        part name -> sorted int64 index array; parts are disjoint.
    """
    y = np.asarray(y)
    counts = _resolve_sizes(sizes, len(y))
    classes, class_sizes = np.unique(y, return_counts=True)
    rng = np.random.default_rng(seed)
    shuffled = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    remaining = class_sizes.astype(np.int64)
    taken = np.zeros_like(remaining)
    parts: dict[str, np.ndarray] = {}
    for part, count in counts.items():
        per_class = _proportional_counts(count, remaining)
        pieces = [shuffled[i][taken[i] : taken[i] + per_class[i]] for i in range(len(classes))]
        parts[part] = np.sort(np.concatenate(pieces)).astype(np.int64)
        taken += per_class
        remaining -= per_class
    return parts


def _resolve_sizes(sizes: Mapping[str, int | float], total: int) -> dict[str, int]:
    if not sizes:
        raise ValueError("stratified_split needs at least one part")
    values = list(sizes.values())
    if all(isinstance(v, (int, np.integer)) for v in values):
        if min(values) < 0 or sum(values) > total:
            raise ValueError(f"split sizes {dict(sizes)} must be >= 0 and sum to at most {total}")
        return {k: int(v) for k, v in sizes.items()}
    if min(values) < 0 or abs(sum(values) - 1.0) > 1e-9:
        raise ValueError(f"split fractions {dict(sizes)} must be >= 0 and sum to 1")
    return dict(zip(sizes, _proportional_counts(total, np.array(values, dtype=np.float64)).tolist()))


def _proportional_counts(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers summing to `total`, proportional to `weights` (largest-remainder rounding)."""
    if total == 0:
        return np.zeros(len(weights), dtype=np.int64)
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    short = total - int(counts.sum())
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


def iterate_batches(
    split: Split, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) batches of `split`, the last one possibly smaller. With `shuffle` the order
    is a permutation drawn from `generator`, which is then required (no unseeded randomness)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(split)
    if not shuffle:
        for start in range(0, n, batch_size):
            yield split.x[start : start + batch_size], split.y[start : start + batch_size]
        return
    if generator is None:
        raise ValueError("iterate_batches(shuffle=True) needs an explicit seeded generator")
    order = torch.randperm(n, generator=generator, device=generator.device).to(split.x.device)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield split.x[index], split.y[index]


def augment(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Augment a batch (N, C, H, W) on its own device with randomness from `generator`.

    `kind` is "none" (returns `x` itself) or "crop-flip": a random crop of the image padded with
    `CROP_PADDING` zero pixels on each side, then a horizontal flip with probability 1/2.
    """
    if kind == "none":
        return x
    if kind != "crop-flip":
        raise AtbenchError(f"unknown augmentation {kind!r}", f"use one of: {', '.join(AUGMENTATIONS)}")
    n, c, h, w = x.shape
    pad = CROP_PADDING
    draw = functools.partial(torch.randint, size=(n,), generator=generator, device=generator.device)
    top = draw(0, 2 * pad + 1).to(x.device)
    left = draw(0, 2 * pad + 1).to(x.device)
    flip = draw(0, 2).to(x.device).bool()
    rows = top[:, None] + torch.arange(h, device=x.device)
    cols = left[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    padded = F.pad(x, (pad, pad, pad, pad))
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * pad))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


# ----------------------------------------------------------------------------- bundle building


def _split_from_arrays(images: np.ndarray, labels: np.ndarray, scale: float) -> Split:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).div_(scale)
    return Split(x=x, y=torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)))


def _channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std, accumulated in float64 chunk by chunk."""
    total, total_sq = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for start in range(0, len(x), chunk):
        block = x[start : start + chunk].numpy().astype(np.float64)
        total += block.sum(axis=(0, 2, 3))
        total_sq += np.square(block).sum(axis=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return tuple(mean.tolist()), tuple(std.tolist())


def _content_sha256(splits: Mapping[str, Split], class_names: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    shapes = {k: list(s.x.shape) for k, s in splits.items()}
    digest.update(json.dumps({"class_names": list(class_names), "shapes": shapes}, sort_keys=True).encode())
    for split in splits.values():
        digest.update(split.x.contiguous().numpy().data)
        digest.update(split.y.contiguous().numpy().data)
    return digest.hexdigest()


def build_bundle(name: str, arrays: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 class_names: tuple[str, ...], scale: float) -> DataBundle:
    """Assemble a bundle from (images N,C,H,W, labels) for "train", "val" and "test"; pixels / `scale`."""
    splits = {k: _split_from_arrays(*arrays[k], scale) for k in ("train", "val", "test")}
    c, h, w = (int(d) for d in splits["train"].x.shape[1:])
    mean, std = _channel_stats(splits["train"].x)
    return DataBundle(
        name=name, train=splits["train"], val=splits["val"], test=splits["test"],
        num_classes=len(class_names), class_names=class_names, input_shape=(c, h, w),
        mean=mean, std=std, sha256=_content_sha256(splits, class_names),
    )


def subsets(images: np.ndarray, labels: np.ndarray, parts: Mapping[str, np.ndarray]) -> dict:
    """Part name -> (images, labels) of the indices `parts` gives it."""
    return {k: (images[index], labels[index]) for k, index in parts.items()}


def train_val_parts(images: np.ndarray, labels: np.ndarray, val_size: int | None) -> dict:
    """Carve a stratified validation part of `val_size` images (default: min(1000, 10%)) out of
    the training files."""
    if val_size is None:
        val_size = min(DEFAULT_VAL_SIZE, len(labels) // 10)
    sizes = {"val": val_size, "train": len(labels) - val_size}
    return subsets(images, labels, stratified_split(labels, sizes, SPLIT_SEED))


# ----------------------------------------------------------------------------- file reading


def malformed(path: Path, what: str) -> AtbenchError:
    """The error for a data file that exists but cannot be read as the data set it should hold."""
    return AtbenchError(
        f"data file {path} is malformed: {what}",
        "replace it with a fresh copy of the original file (re-download and re-extract the data set)",
    )


def checked_labels(labels, num_classes: int, count: int, path: Path) -> np.ndarray:
    """`count` integer labels in [0, num_classes) as int64, or a `malformed` error naming `path`."""
    labels = np.asarray(labels)
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise malformed(path, f"expected {count} integer labels, found {labels.dtype} {labels.shape}")
    if count and (labels.min() < 0 or labels.max() >= num_classes):
        raise malformed(path, f"labels must lie in [0, {num_classes - 1}]")
    return labels.astype(np.int64)
