"""Run a submitted attack against one board entry and write its attack record
(`leaderboard.attack_record`): the protocol's test points (`select_test_subset`) at every eps of the
protocol in increasing order, each eps attacking only the points still robust at the smaller one,
as the protocol's attacks are run (`benchmark.pipeline.evaluate`), with the entry's clean flags and
votes. The caller runs it single-threaded (`benchmark.pipeline.executor.run_local`), as records
are made.

A re-run skips an entry whose attack record exists, names the same attack configuration, source,
entry and protocol, and is admitted.
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attacks.base import Attack
from benchmark.core.errors import AtbenchError
from benchmark.core.io import atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file
from benchmark.core.names import inside
from benchmark.core.provenance import device_name, git_state, package_versions, utc_now
from benchmark.pipeline.attack_targets import Target
from benchmark.pipeline.data import DataBundle
from benchmark.pipeline.evaluate import CHUNK, FiniteWatch, flags_npz_bytes, predict, select_test_subset
from benchmark.pipeline.protocol import Protocol
from benchmark.pipeline.tracks import Track
from leaderboard.attack_admission import admit_attack
from leaderboard.attack_record import attack_record_name, build_attack_record, load_attack_record
from leaderboard.derive import flag_key
from leaderboard.evidence import Admitted

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a submitted attack's code came from (the attack record's `attack.source` and
    `attack.source_sha256`)."""

    kind: str
    sha256: str | None


def attack_source(cls: type, files: dict[str, str]) -> Source:
    """The source of attack class `cls`: the `--attack-file` that registered it (`files`: attack
    name -> file), atbench's `attacks/adaptive/`, or an installed package (hashed when its module
    is a file)."""
    if cls.name in files:
        return Source("file", sha256_file(files[cls.name]))
    path = inspect.getsourcefile(cls)
    kind = "atbench" if cls.__module__.startswith("attacks.adaptive.") else "package"
    return Source(kind, sha256_file(path) if path and Path(path).is_file() else None)


def _predictions(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor, eps: float,
                 alive: np.ndarray, device: str, votes: int) -> np.ndarray:
    """Predictions (by `votes` passes) on the attack's adversarial examples of the `alive` points; -1
    elsewhere.

    Raises:
        AtbenchError: the model returned NaN or Inf logits during the attack.
    """
    preds = np.full(len(y), -1, dtype=np.int64)
    idx = np.flatnonzero(alive)
    watched = FiniteWatch(model)
    for chunk in np.array_split(idx, max(1, int(np.ceil(len(idx) / CHUNK)))):
        if len(chunk):
            x_adv = attack(watched, x[chunk].to(device), y[chunk].to(device), eps)
            watched.check(f"{attack.name} at eps {eps:g}")
            preds[chunk] = predict(model, x_adv, device, votes)
    return preds


def attack_flags(model: nn.Module, attack: Attack, protocol: Protocol, x: torch.Tensor, y: torch.Tensor,
                 clean: np.ndarray, device: str, votes: int) -> dict[str, np.ndarray]:
    """"clean" (= `clean`, the entry's) and, per eps in increasing order, `<attack>@<eps>`: robust
    (alive at the smaller eps and correct on the attack's adversarial example). The model's own
    randomness, if any, is drawn from torch's generator seeded with the attack's seed."""
    torch.manual_seed(attack.config.seed)
    labels = y.numpy()
    flags, alive = {"clean": clean.copy()}, clean.copy()
    for eps in protocol.eps:
        preds = _predictions(model, attack, x, y, protocol.eps_value(eps), alive, device, votes)
        alive = alive & (preds == labels)
        flags[flag_key(attack.name, eps)] = alive
    return flags


def _provenance(device: str, attack: Attack, protocol: Protocol, bundle: DataBundle, indices: np.ndarray) -> dict:
    commit, dirty = git_state()
    packages = package_versions()
    return {"atbench_version": packages["atbench"], "git_commit": commit, "git_dirty": dirty, "packages": packages,
            "python": platform.python_version(), "device": device_name(torch.device(device)),
            "seeds": {"attack": attack.config.seed, "test_subset": protocol.subset_seed},
            "data_sha256": bundle.sha256, "test_subset_sha256": sha256_bytes(indices.astype(np.int64).tobytes()),
            "utc_time": utc_now()}


def _identity(attack: Attack, source: Source, entry: Admitted) -> dict:
    """The attack record's fields that say what was attacked, and with what."""
    record = entry.record
    return {"attack": {"id": attack.name, "config": repr(attack), "source": source.kind,
                       "source_sha256": source.sha256},
            "entry": {"track": record["track"], "defense": record["defense"]["id"], "seed": record["seed"],
                      "external": record["defense"]["external"],
                      "checkpoint_sha256": record["provenance"]["checkpoint_sha256"]},
            "protocol": record["protocol"], "votes": record["votes"]}


def _finished(path: Path, identity: dict, entry: Admitted) -> bool:
    """Whether `path` holds an admitted attack record of exactly `identity`."""
    if not path.is_file():
        return False
    try:
        record = load_attack_record(path)
        same = all(record[k] == v for k, v in identity.items())
        key = (entry.record["defense"]["id"], entry.record["seed"])
        return same and admit_attack(record, path, {key: entry}) is not None
    except AtbenchError:
        return False


def attack_entry(attack: Attack, source: Source, target: Target, track: Track, protocol: Protocol,
                 bundle: DataBundle, out_dir: str | Path, device: str, data_dir: str | None) -> Path:
    """Run `attack` against the target's model and write its attack record and flags into
    `<out_dir>/<protocol>/` (unless an identical admitted one is there); returns the record's path.

    Raises:
        AtbenchError: the entry's points are not the protocol's, its model cannot be loaded, or it
            returns non-finite logits under the attack.
    """
    entry = target.entry
    record = entry.record
    name = attack_record_name(attack.name, record["defense"]["id"], record["seed"])
    folder = inside(Path(out_dir), Path(protocol.id))
    path = folder / f"{name}.json"
    identity = _identity(attack, source, entry)
    if _finished(path, identity, entry):
        log.info("%s: attacked by %s already, skipping", target.label, attack.name)
        return path
    labels = bundle.test.y.numpy()
    indices = select_test_subset(labels, protocol.n_examples, protocol.subset_seed)
    if not np.array_equal(indices, entry.flags.indices):
        raise AtbenchError(f"the record of {target.label} was evaluated on other test points than protocol "
                           f"{protocol.id} selects now", "re-evaluate the entry under the protocol as shipped")
    model = target.model(track, bundle, data_dir, device)
    t0 = time.perf_counter()
    flags = attack_flags(model, attack, protocol, bundle.test.x[indices], bundle.test.y[indices],
                         entry.flags.flags["clean"], device, record["votes"])
    seconds = time.perf_counter() - t0
    data = flags_npz_bytes(flags, labels[indices], indices)
    clean = flags["clean"]
    built = build_attack_record(
        **identity, clean_correct=int(clean.sum()),
        broken={e: int((clean & ~flags[flag_key(attack.name, e)]).sum()) for e in protocol.eps},
        flags={"file": f"{name}.flags.npz", "sha256": sha256_bytes(data)}, runtime_s=round(seconds, 3),
        provenance=_provenance(device, attack, protocol, bundle, indices))
    atomic_write_bytes(folder / f"{name}.flags.npz", data)
    atomic_write_json(path, built)
    return path
