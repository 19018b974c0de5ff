"""Atomic writes, hashing and weights-only checkpoint loading."""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any

from benchmark.core.errors import AtbenchError


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Written files get the permissions `open()` would give them (0o666 less the umask, usually
# 0o644), not mkstemp's owner-only 0o600: boards and records are meant to be read and served.
_FILE_MODE = 0o666 & ~_process_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename, so a crash never
    leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _FILE_MODE)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temp_files(folder: str | Path) -> None:
    """Delete the temporary files of `atomic_write_bytes` that a killed process left in `folder`.
    Only call it while holding the folder's lock (`benchmark.core.lock`), when no write is running."""
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically write `obj` as canonical JSON."""
    atomic_write_text(path, dumps_json(obj))


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's contents."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex sha256 of the canonical JSON form of `obj`."""
    return sha256_bytes(dumps_json(obj).encode("utf-8"))


def checkpoint_bytes(state: dict) -> bytes:
    """The bytes `save_checkpoint` writes for `state` (tensors, numbers, strings, lists, dicts
    only, so they load with `weights_only=True`)."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def save_checkpoint(path: str | Path, state: dict) -> str:
    """Atomically save a checkpoint (`checkpoint_bytes`). Returns its sha256."""
    data = checkpoint_bytes(state)
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


ZIP_MAGIC, PICKLE_MAGIC = b"PK\x03\x04", b"\x80"


def load_checkpoint(path: str | Path, expected_sha256: str | None = None) -> dict:
    """Load a checkpoint with `weights_only=True`, checking its sha256 when one is given.

    Raises:
        AtbenchError: the file is missing, fails its hash, is not a PyTorch checkpoint (text,
            empty), is truncated or damaged, holds objects that are not weights (a pickle that
            would run code is refused, never run), or holds something other than a dict.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise AtbenchError(f"checkpoint {path} does not exist", "check the path, or re-run training")
    data = path.read_bytes()
    if expected_sha256 is not None and sha256_bytes(data) != expected_sha256:
        raise AtbenchError(
            f"checkpoint {path} fails its sha256 check (file changed or corrupted)",
            "delete it and re-run `atbench run` to retrain, or restore the original file",
        )
    resave = "re-save it with torch.save(model.state_dict(), path), or restore the original file"
    if not data.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        what = "is empty" if not data else "is not a PyTorch checkpoint (neither torch.save's zip archive nor a pickle)"
        raise AtbenchError(f"checkpoint {path} {what}", resave)
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols before refusing them
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refuses globals outside its allow-list
        raise AtbenchError(
            f"checkpoint {path} cannot be loaded safely: it holds Python objects beyond tensors and plain containers "
            f"({str(exc).splitlines()[-1][:160]})",
            "only weights-only checkpoints are accepted; " + resave) from exc
    except Exception as exc:  # torch raises several types for a cut or damaged archive
        raise AtbenchError(f"checkpoint {path} is truncated or damaged ({type(exc).__name__}: "
                           f"{str(exc).split('. ')[0][:120] if str(exc) else 'no detail'})", resave) from exc
    if not isinstance(state, dict):
        raise AtbenchError(f"checkpoint {path} holds a {type(state).__name__}, not a state_dict (a dict of tensors)",
                           resave)
    return state


def state_digest(state: Any) -> str:
    """sha256 of a checkpoint's contents (not of its file's bytes): every tensor's dtype, shape and
    bytes and every plain value, walked in a fixed order. It is the same for any file that
    loads to the same state, and differs when a flipped byte changed a single value."""
    import torch

    h = hashlib.sha256()

    def walk(node: Any) -> None:
        if isinstance(node, torch.Tensor):
            flat = node.detach().cpu().contiguous().reshape(-1)
            h.update(f"T{node.dtype}{tuple(node.shape)}".encode())
            h.update(flat.view(torch.uint8).numpy().tobytes())
        elif isinstance(node, dict):
            h.update(f"D{len(node)}".encode())
            for key in sorted(node, key=repr):
                h.update(repr(key).encode())
                walk(node[key])
        elif isinstance(node, (list, tuple)):
            h.update(f"L{len(node)}".encode())
            for item in node:
                walk(item)
        else:
            h.update(f"V{type(node).__name__}:{node!r}".encode())

    walk(state)
    return h.hexdigest()


def save_verified_checkpoint(path: str | Path, state: dict) -> None:
    """Atomically save `state` with its `state_digest` inside, for a checkpoint whose file hash
    is recorded nowhere else (the training state `last.pt`)."""
    save_checkpoint(path, {**state, "digest": state_digest(state)})


def load_verified_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint saved by `save_verified_checkpoint` and check its digest.

    Raises:
        AtbenchError: the file is not a weights-only checkpoint, or its contents changed since it
            was saved (e.g. a flipped byte: torch itself loads most such files without a word).
    """
    state = load_checkpoint(path)
    digest = state.pop("digest", None)
    if digest is None or state_digest(state) != digest:
        raise AtbenchError(
            f"checkpoint {path} fails its content check (file changed or corrupted)",
            "restore the file, or delete it and re-run to start this training run again",
        )
    return state
