"""`atbench data download` against a real HTTP server on 127.0.0.1 serving small fake files in the
real formats (`tests/fake_datasets.py`); the pinned sources are patched to those files' hashes.

Every test also checks that a failure leaves nothing where a loader reads (only `.downloads/`
and the lock file may hold anything).
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from benchmark.core.errors import AtbenchError
from benchmark.core.lock import LOCK_NAME
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.datasets import sources
from benchmark.pipeline.datasets.download import (
    DOWNLOADS,
    MISSING,
    UNVERIFIED,
    VERIFIED,
    download,
    missing_data_error,
    status,
)
from benchmark.pipeline.datasets.sources import RemoteFile
from tests import fake_datasets as fake
from tests.fake_server import publish

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[1]
SIZES = {"mnist": (200, 50), "cifar10": (100, 50), "cifar100": (300, 100), "svhn": (100, 50)}
BUILDERS = {"mnist": fake.mnist_files, "cifar10": fake.cifar10_files, "cifar100": fake.cifar100_files,
            "svhn": fake.svhn_files}


def build(name: str, seed: int = 0) -> dict[str, fake.FakeFile]:
    return BUILDERS[name](*SIZES[name], seed)


def visible_files(data_dir: Path) -> list[str]:
    """Files where a loader could read them: all but `.downloads/` and the lock file."""
    return sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*")
                  if p.is_file() and p.name != LOCK_NAME and p.relative_to(data_dir).parts[0] != DOWNLOADS)


def download_error(*args, **kwargs) -> AtbenchError:
    with pytest.raises(AtbenchError) as info:
        download(*args, progress=False, **kwargs)
    return info.value


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "svhn"])
def test_download_then_load(server, monkeypatch, tmp_path, name):
    """Breaks if a data set is not unpacked into exactly the layout its loader reads, or if its
    downloaded files are left behind in .downloads/."""
    files = build(name)
    publish(server, monkeypatch, name, files)
    folder = download(name, tmp_path, progress=True)
    assert folder == tmp_path / sources.SOURCES[name].folder
    assert status(tmp_path)[name] == VERIFIED
    assert [p.name for p in (tmp_path / DOWNLOADS).iterdir()] == []
    bundle = load_dataset(name, tmp_path)
    n_train, n_test = SIZES[name]
    assert (len(bundle.train) + len(bundle.val), len(bundle.val), len(bundle.test)) == (n_train, n_train // 10, n_test)
    if name == "mnist":
        raw = gzip.decompress(files["t10k-images-idx3-ubyte.gz"].data)[16:]
        expected = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 1, 28, 28)
        assert np.array_equal((bundle.test.x * 255).round().numpy().astype(np.uint8), expected)
        assert bundle.input_shape == (1, 28, 28) and bundle.class_names == tuple("0123456789")


def test_mirror_replaces_the_url_prefix(server, monkeypatch, tmp_path):
    """Breaks if --mirror does not replace each file's URL up to its name (the official URL,
    unreachable here, would be used)."""
    source = publish(server, monkeypatch, "mnist", build("mnist"), at="some/mirror")
    unreachable = tuple(dataclasses.replace(f, url=f"http://127.0.0.1:9/mnist/{f.name}") for f in source.files)
    monkeypatch.setitem(sources.SOURCES, "mnist", dataclasses.replace(source, files=unreachable))
    download("mnist", tmp_path, mirror=server.url + "/some/mirror/", progress=False)
    assert sorted(path for path, _ in server.requests) == sorted(f"/some/mirror/{f.name}" for f in source.files)
    assert status(tmp_path)["mnist"] == VERIFIED


def test_cut_connection_resumes_with_a_range_request(server, monkeypatch, tmp_path):
    """Breaks if a connection cut mid-file is not reported as one error, or if the re-run
    downloads the file again from the start instead of resuming with an HTTP Range request."""
    source = publish(server, monkeypatch, "cifar10", build("cifar10"))
    file = source.files[0]
    path, cut = f"/cifar10/{file.name}", file.size // 3
    server.cut_after[path] = cut
    error = download_error("cifar10", tmp_path)
    assert "was cut after" in error.problem and file.url in error.problem and "--mirror" in error.fix
    assert (tmp_path / DOWNLOADS / f"{file.name}.part").stat().st_size == cut
    assert visible_files(tmp_path) == []
    download("cifar10", tmp_path, progress=False)
    assert server.requests == [(path, None), (path, f"bytes={cut}-")]
    assert status(tmp_path)["cifar10"] == VERIFIED
    assert len(load_dataset("cifar10", tmp_path).test) == SIZES["cifar10"][1]


def test_server_ignoring_range_restarts_from_zero(server, monkeypatch, tmp_path):
    """Breaks if the answer 200 (whole file) to a Range request is appended to the partial file
    instead of replacing it."""
    source = publish(server, monkeypatch, "cifar10", build("cifar10"))
    server.ignore_range = True
    (tmp_path / DOWNLOADS).mkdir()
    (tmp_path / DOWNLOADS / f"{source.files[0].name}.part").write_bytes(b"stale bytes" * 100)
    download("cifar10", tmp_path, progress=False)
    assert server.requests == [(f"/cifar10/{source.files[0].name}", "bytes=1100-")]
    assert status(tmp_path)["cifar10"] == VERIFIED


def test_wrong_hash_is_refused_and_deleted(server, monkeypatch, tmp_path):
    """Breaks if a file whose sha256 differs from the pinned one is kept or unpacked, or if the
    error does not name the file and both hashes."""
    files = build("cifar10")
    source = publish(server, monkeypatch, "cifar10", files)
    pinned = dataclasses.replace(source.files[0], sha256="ab" * 32)
    monkeypatch.setitem(sources.SOURCES, "cifar10", dataclasses.replace(source, files=(pinned,)))
    error = download_error("cifar10", tmp_path)
    actual = files[pinned.name].sha256
    assert pinned.name in error.problem and "ab" * 32 in error.problem and actual in error.problem
    assert list((tmp_path / DOWNLOADS).iterdir()) == []
    assert visible_files(tmp_path) == [] and status(tmp_path)["cifar10"] == MISSING


@pytest.mark.parametrize("code", [404, 500])
def test_http_error_is_one_error_naming_the_url(server, monkeypatch, tmp_path, code):
    """Breaks if an HTTP error status is not one AtbenchError naming the URL, the status and the
    --mirror fix, or if it leaves anything where the loader reads."""
    source = publish(server, monkeypatch, "cifar10", build("cifar10"))
    server.status[f"/cifar10/{source.files[0].name}"] = code
    error = download_error("cifar10", tmp_path)
    assert source.files[0].url in error.problem and f"HTTP {code}" in error.problem and "--mirror" in error.fix
    assert visible_files(tmp_path) == []


def test_failure_on_a_later_file_shows_nothing_and_rerun_fetches_only_the_rest(server, monkeypatch, tmp_path):
    """Breaks if a data set of several files appears half-downloaded to its loader, or if the
    re-run downloads again the files already verified."""
    source = publish(server, monkeypatch, "mnist", build("mnist"))
    last = f"/mnist/{source.files[-1].name}"
    server.status[last] = 404
    download_error("mnist", tmp_path)
    assert visible_files(tmp_path) == [] and status(tmp_path)["mnist"] == MISSING
    with pytest.raises(AtbenchError, match="atbench data download mnist --data-dir"):
        load_dataset("mnist", tmp_path)
    del server.status[last]
    server.requests.clear()
    download("mnist", tmp_path, progress=False)
    assert server.requests == [(last, None)]
    assert status(tmp_path)["mnist"] == VERIFIED


def test_unreachable_server_is_one_error(monkeypatch, tmp_path):
    """Breaks if a refused connection escapes as a URLError/traceback instead of one AtbenchError."""
    files = build("cifar10")
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_address[1]
    url = f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"
    file = files["cifar-10-python.tar.gz"]
    remote = RemoteFile("cifar-10-python.tar.gz", url, len(file.data), file.sha256)
    monkeypatch.setitem(sources.SOURCES, "cifar10", dataclasses.replace(sources.SOURCES["cifar10"], files=(remote,)))
    error = download_error("cifar10", tmp_path)
    assert "cannot reach" in error.problem and url in error.problem and "--mirror" in error.fix


@pytest.mark.parametrize("where", ["before-headers", "mid-file"])
def test_stalled_server_times_out(server, monkeypatch, tmp_path, where):
    """Breaks if a server that stops sending hangs the download past its timeout, or if the
    timeout is not one clear error naming the URL."""
    source = publish(server, monkeypatch, "cifar10", build("cifar10"))
    path = f"/cifar10/{source.files[0].name}"
    if where == "before-headers":
        server.stall_before.add(path)
    else:
        server.stall_after[path] = 1000
    started = time.monotonic()
    error = download_error("cifar10", tmp_path, timeout=0.5)
    assert time.monotonic() - started < 5
    assert "timed out" in error.problem and "0.5 s" in error.problem and source.files[0].url in error.problem
    assert visible_files(tmp_path) == []


def test_second_download_is_a_no_op(server, monkeypatch, tmp_path):
    """Breaks if downloading a data set that is present and verified contacts the server."""
    publish(server, monkeypatch, "svhn", build("svhn"))
    first = download("svhn", tmp_path, progress=False)
    server.requests.clear()
    assert download("svhn", tmp_path, progress=False) == first
    assert server.requests == []


def _archive_with_link() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        link = tarfile.TarInfo(f"{fake.CIFAR10_FOLDER}/data_batch_1")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    return raw.getvalue()


@pytest.mark.parametrize("evil", ["../escaped", "/absolute", "elsewhere/file", "link"])
def test_unsafe_archive_members_are_refused(server, monkeypatch, tmp_path, evil):
    """Breaks if a tar member with an absolute path, a '..', a path outside the data set's folder
    or a link is unpacked, or if a refused archive leaves files behind."""
    if evil == "link":
        archive = _archive_with_link()
    else:
        archive = fake.tar_gz({f"{fake.CIFAR10_FOLDER}/data_batch_1": b"x", evil: b"evil"})
    publish(server, monkeypatch, "cifar10", {"cifar-10-python.tar.gz": fake.fake_file(archive)})
    data_dir = tmp_path / "data"
    error = download_error("cifar10", data_dir)
    assert "refusing to unpack" in error.problem
    assert "link" in error.problem if evil == "link" else repr(evil) in error.problem
    assert visible_files(data_dir) == [] and [p.name for p in tmp_path.iterdir()] == ["data"]
    assert [p.name for p in (data_dir / DOWNLOADS).iterdir() if p.is_dir()] == []


def test_status_replacement_and_missing_data_error(server, monkeypatch, tmp_path):
    """Breaks if `status` mislabels a missing, hand-placed or changed data set, if a download does
    not replace an unverified copy, or if the missing-data error lacks the exact command."""
    assert set(status(tmp_path).values()) == {MISSING}
    error = missing_data_error("cifar10", tmp_path)
    assert f"atbench data download cifar10 --data-dir {tmp_path}" in error.fix
    fake.write_cifar10(tmp_path, 100, 50, seed=1, extracted=True)
    assert status(tmp_path)["cifar10"] == UNVERIFIED
    publish(server, monkeypatch, "cifar10", build("cifar10"))
    download("cifar10", tmp_path, progress=False)
    assert status(tmp_path)["cifar10"] == VERIFIED
    batch = tmp_path / fake.CIFAR10_FOLDER / "test_batch"
    assert batch.read_bytes() == fake.cifar10_members(*SIZES["cifar10"], seed=0)[f"{fake.CIFAR10_FOLDER}/test_batch"]
    batch.write_bytes(batch.read_bytes()[:-1])
    assert status(tmp_path)["cifar10"] == UNVERIFIED


_CHILD = """
import dataclasses, json, sys
from benchmark.pipeline.datasets import sources
from benchmark.pipeline.datasets.download import download
files = tuple(sources.RemoteFile(**f) for f in json.loads(sys.argv[2]))
sources.SOURCES["mnist"] = dataclasses.replace(sources.SOURCES["mnist"], files=files)
download("mnist", sys.argv[1], progress=False)
"""


def test_concurrent_downloads_in_two_processes(server, monkeypatch, tmp_path):
    """Breaks if two processes downloading into one data folder do not take turns: both would
    write the same .part files (corrupting them) or download everything twice."""
    source = publish(server, monkeypatch, "mnist", build("mnist"))
    server.hold = threading.Event()
    pinned = json.dumps([dataclasses.asdict(f) for f in source.files])
    command = [sys.executable, "-c", _CHILD, str(tmp_path), pinned]
    first = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert server.arrived.wait(30)  # the first one holds the lock and waits for the server
    second = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    waiting = second.stderr.readline()
    server.hold.set()
    assert "in use by another atbench process" in waiting
    for child in (first, second):
        assert child.wait(timeout=60) == 0, child.stderr.read()
    assert sorted(path for path, _ in server.requests) == sorted(f"/mnist/{f.name}" for f in source.files)
    assert status(tmp_path)["mnist"] == VERIFIED
    assert len(load_dataset("mnist", tmp_path).test) == SIZES["mnist"][1]


def test_concurrent_downloads_in_two_threads(server, monkeypatch, tmp_path):
    """Breaks if two threads of one process downloading into one folder do not take turns (the
    folder lock alone lets its holder's process in again): each file would be fetched twice."""
    source = publish(server, monkeypatch, "svhn", build("svhn"))
    server.hold = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            download("svhn", tmp_path, progress=False)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    threads[0].start()
    assert server.arrived.wait(30)
    threads[1].start()
    time.sleep(0.3)  # time for the second thread to reach the lock
    server.hold.set()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(path for path, _ in server.requests) == sorted(f"/svhn/{f.name}" for f in source.files)
    assert status(tmp_path)["svhn"] == VERIFIED


def test_bad_name_and_bad_mirror_are_one_error(tmp_path):
    """Breaks if an unknown data set or a non-http mirror is not refused before any work."""
    with pytest.raises(AtbenchError, match="no download source"):
        download("imagenet", tmp_path)
    with pytest.raises(AtbenchError, match="not an http"):
        download("mnist", tmp_path, mirror="ftp://example.org/mnist")
    assert list(tmp_path.iterdir()) == []


def test_cli_exits_2_without_traceback(server, tmp_path):
    """Breaks if `atbench data download` lets a download failure escape as a traceback instead of
    one message and exit code 2, or if `atbench data ls` does not list the data sets."""
    data_dir = tmp_path / "data"
    proc = subprocess.run([sys.executable, "-m", "benchmark", "data", "download", "cifar10", "--data-dir",
                           str(data_dir), "--mirror", f"{server.url}/nowhere", "-q"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "atbench: error:" in proc.stderr and f"{server.url}/nowhere/cifar-10-python.tar.gz" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "benchmark", "data", "ls", "--data-dir", str(data_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[:2] for line in proc.stdout.splitlines()] == [
        [name, MISSING] for name in sources.SOURCES]


@pytest.mark.parametrize("mirror", ["http://127.0.0.1:99999/", "http://127.0.0.1:0/", "http://[::1",
                                    "http://127.0.0.1:port/", "http:///no-host"])
def test_malformed_mirror_or_port_out_of_range_is_one_error(tmp_path, mirror):
    """Breaks if a mirror with a port outside 1..65535 is accepted (urllib takes 99999 modulo
    65536, i.e. port 34463) or a malformed URL escapes as a ValueError instead of one error."""
    error = download_error("mnist", tmp_path, mirror=mirror)
    assert repr(mirror) in error.problem and "https://host/path/" in error.fix
    assert list(tmp_path.iterdir()) == []


def _pin_size(monkeypatch, source, size: int):
    """Pin the source's only file to `size` bytes (its hash unchanged)."""
    pinned = dataclasses.replace(source.files[0], size=size)
    monkeypatch.setitem(sources.SOURCES, source.dataset, dataclasses.replace(source, files=(pinned,)))
    return pinned


@pytest.mark.parametrize("announced", [True, False])
@pytest.mark.parametrize("delta", [-100, 100])
def test_answer_of_another_size_than_pinned_is_refused(server, monkeypatch, tmp_path, announced, delta):
    """Breaks if a file whose Content-Length (`announced`) or final length differs from the pinned
    size is reported as a cut connection to re-run (a re-run gets the same file), is not refused
    at once naming both sizes, or if more than the pinned size is ever written."""
    source = publish(server, monkeypatch, "cifar10", build("cifar10"))
    served = len(server.files[f"/cifar10/{source.files[0].name}"])
    pinned = _pin_size(monkeypatch, source, served - delta)
    if not announced:
        server.no_length.add(f"/cifar10/{pinned.name}")
    error = download_error("cifar10", tmp_path)
    assert "was cut" not in error.problem and "re-running cannot help" in error.fix
    assert pinned.url in error.problem and f"pinned size is {pinned.size:,} bytes" in error.problem
    if announced or delta < 0:  # a longer file without a length is known to be longer, not its size
        assert f"its size is {served:,} bytes" in error.problem
    assert list((tmp_path / DOWNLOADS).iterdir()) == [] and visible_files(tmp_path) == []
    assert len(server.requests) == 1


def test_resumed_answer_of_another_total_size_is_refused(server, monkeypatch, tmp_path):
    """Breaks if a Range answer whose Content-Range total differs from the pinned size is
    appended to the partial file, or if the partial file (finished work) is deleted."""
    source = publish(server, monkeypatch, "cifar10", build("cifar10"))
    served = len(server.files[f"/cifar10/{source.files[0].name}"])
    pinned = _pin_size(monkeypatch, source, served + 7)
    part = tmp_path / DOWNLOADS / f"{pinned.name}.part"
    part.parent.mkdir()
    part.write_bytes(server.files[f"/cifar10/{pinned.name}"][:500])
    error = download_error("cifar10", tmp_path)
    assert f"its size is {served:,} bytes" in error.problem and f"{pinned.size:,}" in error.problem
    assert part.stat().st_size == 500 and server.requests == [(f"/cifar10/{pinned.name}", "bytes=500-")]


def test_cli_refuses_a_mirror_port_out_of_range(tmp_path):
    """Breaks if `atbench data download --mirror http://127.0.0.1:99999/` is accepted or ends in a
    traceback instead of exit 2 naming the port."""
    proc = subprocess.run([sys.executable, "-m", "benchmark", "data", "download", "mnist", "--data-dir",
                           str(tmp_path / "data"), "--mirror", "http://127.0.0.1:99999/", "-q"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "atbench: error:" in proc.stderr and "99999" in proc.stderr and "  fix:" in proc.stderr
    assert not (tmp_path / "data").exists()
