"""`atbench data download`: fetch a real data set from its official source (or `--mirror`), check
each file against the sha256 pinned in `sources.SOURCES`, and unpack it into the layout its loader
reads; `status` says which data sets a data folder holds (`atbench data ls`).

A data folder during and after a download:

    <data-dir>/.atbench.lock             two downloads into one folder take turns on it
    <data-dir>/.downloads/<file>.part    a file being downloaded; a re-run resumes it (HTTP Range)
    <data-dir>/.downloads/<file>         a downloaded file whose sha256 matched, not unpacked yet
    <data-dir>/<folder>/...              the unpacked data set, with its marker file `MARKER`

A data set's folder appears in one rename, complete and verified, marker inside, so a loader never
reads half of one.
"""
from __future__ import annotations

import gzip
import http.client
import json
import logging
import os
import re
import shlex
import shutil
import tarfile
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from benchmark.core.errors import AtbenchError
from benchmark.core.io import dumps_json, sha256_file
from benchmark.core.lock import folder_lock
from benchmark.pipeline.datasets import sources
from benchmark.pipeline.datasets.sources import TAR_GZ, RemoteFile, Source

log = logging.getLogger(__name__)

DOWNLOADS = ".downloads"
#: The file written into a data set's folder after it was downloaded, verified and unpacked: the
#: sha256 of each downloaded file and the size of each unpacked one.
MARKER = ".atbench-download.json"
#: `status` values.
VERIFIED, UNVERIFIED, MISSING = "verified", "present but unverified", "missing"
CHUNK_BYTES = 1 << 16
USER_AGENT = "atbench-data-download"
_STAGING_PREFIX = "unpack-"
_RETRY_FIX = ("re-run the same command (a partial file resumes where it stopped), or fetch the files from a "
              "mirror with --mirror URL (each file's name is appended to it)")
#: Threads of one process take turns here: `folder_lock` lets its holder's process re-enter.
_in_process = threading.Lock()


def download(name: str, data_dir: str | Path, mirror: str | None = None, progress: bool = True,
             timeout: float = 30.0) -> Path:
    """Download the data set `name` into `data_dir`, verify it and unpack it where its loader reads
    it. Does nothing (no request is made) when it is there already and verified.

    Args:
        name: a data set of `sources.SOURCES` (mnist, cifar10, cifar100, svhn).
        data_dir: the data folder (made if missing).
        mirror: a URL replacing each file's official URL up to its name (the file name is appended).
        progress: show a progress bar per file.
        timeout: seconds without any data from the server before giving up.

    Returns:
        The data set's folder inside `data_dir`.

    Raises:
        AtbenchError: unknown name, bad mirror, HTTP error, unreachable, stalled or cut server, a
            file whose sha256 is not the pinned one (it is deleted), an unsafe archive, or a data
            folder that cannot be written. A re-run resumes a partial file.
    """
    source = _source(name)
    if mirror is not None:
        _check_mirror(mirror)
    data_dir = Path(data_dir)
    folder = data_dir / source.folder
    try:
        with _in_process, folder_lock(data_dir):
            if _status(data_dir, source) == VERIFIED:
                log.info("%s is in %s already (verified): nothing to download", name, folder)
                return folder
            downloads = data_dir / DOWNLOADS
            downloads.mkdir(exist_ok=True)
            for stale in downloads.glob(f"{_STAGING_PREFIX}*"):  # left by a killed download; we hold the lock
                shutil.rmtree(stale, ignore_errors=True)
            fetched = [_fetch(f, file_url(f, mirror), downloads, timeout, progress) for f in source.files]
            _install(source, fetched, data_dir, downloads)
    except OSError as exc:
        raise AtbenchError(f"cannot write data set {name} into {data_dir}: {exc}",
                           "check that the folder is writable and the disk has room, or pick another "
                           "--data-dir") from exc
    return folder


def status(data_dir: str | Path) -> dict[str, str]:
    """Each downloadable data set's state in `data_dir`: `VERIFIED` (every file the loader reads is
    there and the marker of a verified download matches them), `MISSING` (none of them is there)
    or `UNVERIFIED` (anything else: placed by hand, partial or changed since)."""
    return {name: _status(Path(data_dir), source) for name, source in sources.SOURCES.items()}


def missing_data_error(name: str, data_dir: str | Path) -> AtbenchError:
    """The error a loader raises when the files of `name` are not in `data_dir`: it names the
    missing files and the exact command that downloads them."""
    source = _source(name)
    folder = Path(data_dir) / source.folder
    missing = [m for m in source.members if not (folder / m).is_file()]
    where = f"{folder} lacks {', '.join(missing)}" if folder.is_dir() else f"{folder} does not exist"
    command = f"atbench data download {name} --data-dir {shlex.quote(str(data_dir))}"
    return AtbenchError(f"data set {name} is not in the data folder {data_dir}: {where}",
                        f"run `{command}` (add --mirror URL to use a mirror); the data folder is set with "
                        f"--data-dir or $ATBENCH_DATA_DIR (default ./data)")


def file_url(file: RemoteFile, mirror: str | None) -> str:
    """Where `file` is fetched from: its official URL, or the mirror's URL with its name appended."""
    return file.url if mirror is None else f"{mirror.rstrip('/')}/{file.name}"


# ----------------------------------------------------------------------------- state


def _source(name: str) -> Source:
    if name not in sources.SOURCES:
        raise AtbenchError(f"no download source for data set {name!r}",
                           f"use one of: {', '.join(sorted(sources.SOURCES))}")
    return sources.SOURCES[name]


def _check_mirror(mirror: str) -> None:
    """Refuse a mirror that is not an http(s) URL with a host and, if it names one, a port in
    1..65535 (urllib would silently take a larger port modulo 65536)."""
    fix = "give the URL of the folder holding the files, e.g. https://host/path/ (each file's name is appended to it)"
    try:
        parts = urllib.parse.urlsplit(mirror)
        port = parts.port
    except ValueError as exc:
        raise AtbenchError(f"--mirror {mirror!r} is not a valid URL: {exc}", fix) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AtbenchError(f"--mirror {mirror!r} is not an http(s) URL with a host", fix)
    if port is not None and not 1 <= port <= 65535:
        raise AtbenchError(f"--mirror {mirror!r} names port {port}, outside 1..65535", fix)


def _status(data_dir: Path, source: Source) -> str:
    folder = data_dir / source.folder
    present = [m for m in source.members if (folder / m).is_file()]
    if not present:
        return MISSING
    return VERIFIED if len(present) == len(source.members) and _marker_matches(folder, source) else UNVERIFIED


def _marker(folder: Path, source: Source) -> dict:
    sizes = {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    return {"dataset": source.dataset, "sha256": {f.name: f.sha256 for f in source.files}, "sizes": sizes}


def _marker_matches(folder: Path, source: Source) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
        sizes = marker["sizes"]
        return (marker["sha256"] == {f.name: f.sha256 for f in source.files} and set(source.members) <= set(sizes)
                and all((folder / rel).stat().st_size == size for rel, size in sizes.items()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


# ----------------------------------------------------------------------------- fetching


def _fetch(file: RemoteFile, url: str, downloads: Path, timeout: float, progress: bool) -> Path:
    """`downloads/<file>` with the pinned sha256: kept from an earlier run, or downloaded now
    (resuming its `.part`). A downloaded file with another sha256 is deleted and refused."""
    done = downloads / file.name
    if done.is_file():
        if sha256_file(done) == file.sha256:
            return done
        done.unlink()
    part = downloads / f"{file.name}.part"
    have = part.stat().st_size if part.is_file() else 0
    if have > file.size:
        part.unlink()
        have = 0
    if have < file.size:
        _stream(url, part, have, file.size, timeout, progress)
    actual = sha256_file(part)
    if actual != file.sha256:
        part.unlink()
        raise AtbenchError(f"{file.name} downloaded from {url} has sha256 {actual}, not the pinned {file.sha256}; "
                           f"the file was deleted",
                           "re-run the command to download it again; if this repeats, the server sends another "
                           "file: use --mirror URL with a mirror you trust")
    os.replace(part, done)
    return done


def _stream(url: str, part: Path, have: int, size: int, timeout: float, progress: bool) -> None:
    """Append the rest of `url` (from byte `have`) to `part`, or write it all again when the server
    answers the Range request with the whole file. Never writes past the pinned `size`: an answer
    whose announced or actual length differs from it is refused (`_wrong_size`)."""
    response = _open(url, have, timeout, part)
    if have and response.status == 206 and _range_start(response) != have:  # a part we did not ask for
        response.close()
        part.unlink()
        have = 0
        response = _open(url, 0, timeout, part)
    with response:
        if response.status != 206:  # the whole file: a server that ignores Range answers 200
            have = 0
        announced = _announced_size(response, have)
        if announced is not None and announced != size:
            raise _wrong_size(url, size, announced, part, delete=False)
        bar = tqdm(total=size, initial=have, desc=part.name.removesuffix(".part"), unit="B", unit_scale=True,
                   unit_divisor=1024, disable=not progress, leave=False)
        with open(part, "ab" if have else "wb") as out, bar:
            while True:
                try:  # at most the pinned size; one byte more tells a longer file
                    chunk = response.read(min(CHUNK_BYTES, size - have) or 1)
                except TimeoutError as exc:
                    raise _stalled(url, timeout) from exc
                except (http.client.HTTPException, OSError) as exc:
                    raise _cut(url, have, size) from exc
                if not chunk:
                    break
                if have == size:
                    out.close()
                    raise _wrong_size(url, size, None, part, delete=True)
                out.write(chunk)
                have += len(chunk)
                bar.update(len(chunk))
    if have < size:  # an answer that announced the pinned size and ended early was cut
        raise _cut(url, have, size) if announced is not None else _wrong_size(url, size, have, part, delete=True)


def _announced_size(response: http.client.HTTPResponse, have: int) -> int | None:
    """The whole file's size the answer announces (Content-Range's total, else `have` plus
    Content-Length), or None when it announces none."""
    total = re.fullmatch(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", "").strip())
    if total:
        return int(total.group(1))
    length = response.headers.get("Content-Length", "").strip()
    return have + int(length) if length.isdigit() else None


def _open(url: str, offset: int, timeout: float, part: Path) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416:  # the server's file is shorter than the part we hold: not the pinned file
            part.unlink(missing_ok=True)
        raise AtbenchError(f"downloading {url} failed: the server answered HTTP {exc.code} {exc.reason}",
                           _RETRY_FIX) from exc
    except TimeoutError as exc:
        raise _stalled(url, timeout) from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _stalled(url, timeout) from exc
        raise AtbenchError(f"cannot reach {url}: {exc.reason}", _RETRY_FIX) from exc
    except (http.client.HTTPException, OSError) as exc:
        raise AtbenchError(f"the connection to {url} failed: {type(exc).__name__}: {exc}", _RETRY_FIX) from exc


def _range_start(response: http.client.HTTPResponse) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _stalled(url: str, timeout: float) -> AtbenchError:
    return AtbenchError(f"the server of {url} sent nothing for {timeout:g} s: the download timed out", _RETRY_FIX)


def _wrong_size(url: str, size: int, got: int | None, part: Path, delete: bool) -> AtbenchError:
    """The error for an answer that is not the pinned file's size (`got` None: longer). The
    bytes written from it are deleted (`delete`): they belong to another file."""
    if delete:
        part.unlink(missing_ok=True)
    sent = f"more than {size:,} bytes" if got is None else f"{got:,} bytes"
    return AtbenchError(f"{url} is not the pinned file: its size is {sent}, the pinned size is {size:,} bytes; "
                        "nothing of it was kept",
                        "the server holds another file, so re-running cannot help: fetch the official file (leave "
                        "out --mirror) or use --mirror URL with a mirror that holds it")


def _cut(url: str, have: int, size: int) -> AtbenchError:
    return AtbenchError(f"the connection to {url} was cut after {have:,} of {size:,} bytes", _RETRY_FIX)


# ----------------------------------------------------------------------------- unpacking


def _install(source: Source, fetched: list[Path], data_dir: Path, downloads: Path) -> None:
    """Unpack (or move) the verified files into a staging folder, check it holds what the loader
    reads, write the marker, then rename it into place (replacing an unverified copy)."""
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=downloads))
    try:
        built = staging / source.folder
        if source.unpack == TAR_GZ:
            _extract(fetched[0], staging, source.folder)
        else:
            built.mkdir()
            for path in fetched:
                os.replace(path, built / path.name)
        missing = [m for m in source.members if not (built / m).is_file()]
        if missing:
            raise AtbenchError(f"the downloaded files of {source.dataset} lack {', '.join(missing)}",
                               "the pinned sources in benchmark/pipeline/datasets/sources.py are wrong: report it")
        (built / MARKER).write_text(dumps_json(_marker(built, source)))
        dest = data_dir / source.folder
        if dest.exists() or dest.is_symlink():  # an unverified copy: set aside, deleted with the staging folder
            os.replace(dest, staging / "replaced")
        os.replace(built, dest)
        if source.unpack == TAR_GZ:
            fetched[0].unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract(archive: Path, into: Path, folder: str) -> None:
    """Unpack the tar.gz `archive` into `into`: regular files and folders under `folder/` only
    (no absolute path, no `..`, no link or device), each written by us, not by `tarfile`."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                target = into / _member_path(member, folder, archive)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK_BYTES)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise AtbenchError(f"{archive} cannot be unpacked: {type(exc).__name__}: {exc}",
                           f"delete {archive} and re-run the command") from exc


def _member_path(member: tarfile.TarInfo, folder: str, archive: Path) -> Path:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        why = "an absolute path" if path.is_absolute() else "a path with '..'"
    elif not (member.isfile() or member.isdir()):
        why = "a link or special file"
    elif not path.parts or path.parts[0] != folder:
        why = f"outside {folder}/"
    else:
        return Path(*path.parts)
    raise AtbenchError(f"refusing to unpack {archive.name}: member {member.name!r} is {why}",
                       "this is not the official archive: check the sha256 pinned in "
                       "benchmark/pipeline/datasets/sources.py")
