"""Where the real data sets come from: per data set, the files to download (official URL, size and
sha256 pinned here), how they are unpacked and the folder the loader reads them from.

The hashes were not computed here (this code never had the files); each one is the value that
several independent public projects pin for the same official file, named in the comments below.
`benchmark.pipeline.datasets.download` refuses any file whose sha256 differs.
"""
from __future__ import annotations

from dataclasses import dataclass

#: `Source.unpack` values: one tar.gz archive holding `<folder>/...`, or files used as they are.
TAR_GZ, AS_IS = "tar.gz", "as-is"


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: its name (also what `--mirror` appends to the mirror's URL), its
    official URL, its size in bytes and its sha256."""

    name: str
    url: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Source:
    """A data set's files and where they go.

    Attributes:
        dataset: the name the loader is registered under (`DATASETS`).
        folder: the folder, inside the data folder, that the loader reads.
        files: the files to download.
        unpack: `TAR_GZ` (the one file is an archive whose members all lie in `folder/`) or
            `AS_IS` (the files are moved into `folder/` as they are).
        members: the files the loader needs, relative to `folder`.
        homepage: the data set's home page, for people.
    """

    dataset: str
    folder: str
    files: tuple[RemoteFile, ...]
    unpack: str
    members: tuple[str, ...]
    homepage: str


_KRIZ = "https://www.cs.toronto.edu/~kriz/"
_SVHN = "http://ufldl.stanford.edu/housenumbers/"
# MNIST: yann.lecun.com no longer serves the files reliably; torchvision's MNIST downloads them
# first from this mirror, run by the PyTorch team (torchvision.datasets.MNIST.mirrors[0]).
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"

# sha256 sources (sizes from the same places):
# - cifar-10-python.tar.gz (170,498,071 B): torchvision/prototype/datasets/_builtin/cifar.py (Cifar10._SHA256)
#   and Keras (tensorflow/python/keras/datasets/cifar10.py, get_file(file_hash=...)); torchvision's md5
#   c58f30108f718f92721af3b95e74349a is the md5 of the same file.
# - cifar-100-python.tar.gz (169,001,437 B): torchvision/prototype/datasets/_builtin/cifar.py (Cifar100._SHA256)
#   and Keras (datasets/cifar100.py, get_file(file_hash=...)); torchvision md5 eb9058c3a382ffc7106e4002c42a8d85.
# - train_32x32.mat (182,040,794 B), test_32x32.mat (64,275,384 B): torchvision/prototype/datasets/_builtin/
#   svhn.py (SVHN._CHECKSUMS) and Britefury/batchup (batchup/datasets/svhn.py); torchvision md5
#   e26dedcc434d2e4c54c9b2d4a06d8373 and eb5a983be6a315427106f1b164d9cef3.
# - the four MNIST .gz files: torchvision/prototype/datasets/_builtin/mnist.py (MNIST._CHECKSUMS), also pinned
#   with these sizes by projects fetching from this mirror and from storage.googleapis.com/cvdf-datasets.
SOURCES: dict[str, Source] = {
    "mnist": Source(
        dataset="mnist",
        folder="mnist",
        files=(
            RemoteFile("train-images-idx3-ubyte.gz", _MNIST + "train-images-idx3-ubyte.gz", 9_912_422,
                       "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            RemoteFile("train-labels-idx1-ubyte.gz", _MNIST + "train-labels-idx1-ubyte.gz", 28_881,
                       "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            RemoteFile("t10k-images-idx3-ubyte.gz", _MNIST + "t10k-images-idx3-ubyte.gz", 1_648_877,
                       "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", _MNIST + "t10k-labels-idx1-ubyte.gz", 4_542,
                       "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        ),
        unpack=AS_IS,
        members=("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "cifar10": Source(
        dataset="cifar10",
        folder="cifar-10-batches-py",
        files=(RemoteFile("cifar-10-python.tar.gz", _KRIZ + "cifar-10-python.tar.gz", 170_498_071,
                          "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),),
        unpack=TAR_GZ,
        members=tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": Source(
        dataset="cifar100",
        folder="cifar-100-python",
        files=(RemoteFile("cifar-100-python.tar.gz", _KRIZ + "cifar-100-python.tar.gz", 169_001_437,
                          "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),),
        unpack=TAR_GZ,
        members=("train", "test", "meta"),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "svhn": Source(
        dataset="svhn",
        folder="svhn",
        files=(
            RemoteFile("train_32x32.mat", _SVHN + "train_32x32.mat", 182_040_794,
                       "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8"),
            RemoteFile("test_32x32.mat", _SVHN + "test_32x32.mat", 64_275_384,
                       "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b"),
        ),
        unpack=AS_IS,
        members=("train_32x32.mat", "test_32x32.mat"),
        homepage="http://ufldl.stanford.edu/housenumbers/",
    ),
}
