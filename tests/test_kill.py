"""`kill -9` at random points, and two runs at once: `atbench` processes in subprocesses.

- training: killed several times at random points, `atbench run` resumes from the last
  checkpoint (losing at most the epoch in progress) and ends with the same weights, checkpoint
  and record as an uninterrupted run; its worker processes die with it;
- evaluation: killed several times, the re-run redoes no finished (attack, eps) pair and writes
  the same record;
- two `atbench run` processes on one runs folder: the second waits for the first (or, with
  --no-wait, stops with a message); no record or board is ever read half-written.
"""
from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmark.core.io import load_verified_checkpoint
from benchmark.pipeline.protocol import PROTOCOL_DIR

pytestmark = [pytest.mark.system, pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")]
TIMEOUT = 600
AUTOATTACK = '[[attacks]]\nname = "autoattack"\nversion = "standard"\nseed = 0\n\n'


def smoke_protocol(folder: Path, steps: int) -> str:
    """The smoke protocol without AutoAttack, its white-box attacks at `steps` steps."""
    text = (PROTOCOL_DIR / "smoke.toml").read_text()
    assert AUTOATTACK in text and "steps = 20" in text
    path = folder / f"smoke-{steps}.toml"
    path.write_text(text.replace(AUTOATTACK, "").replace("steps = 20", f"steps = {steps}")
                    .replace('id = "smoke"', f'id = "smoke-{steps}"'))
    return str(path)


def start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """`atbench <args>` in a new process, its output appended to `log`."""
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "benchmark.commands.cli", *args], cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT)


def finish(args: list[str], cwd: Path, log: Path) -> None:
    assert start(args, cwd, log).wait(TIMEOUT) == 0, log.read_text()[-3000:]


def folders(root: Path) -> list[str]:
    return ["--runs-dir", str(root / "runs"), "--records-dir", str(root / "records"),
            "--boards-dir", str(root / "boards")]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            pass
    return out


def wait_for(condition, proc: subprocess.Popen, what: str, seconds: float = TIMEOUT) -> bool:
    """Poll `condition` until true (True) or until `proc` ends (False)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return True


def epochs_logged(run_dir: Path) -> int:
    log = run_dir / "train_log.jsonl"
    return len(log.read_text().splitlines()) if log.is_file() else 0


def same_record(a: Path, b: Path) -> None:
    """Two records agree on everything but when they were made, how long it took and what it cost."""
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    for r in (ra, rb):
        del r["provenance"]["utc_time"], r["runtime_s"], r["cost"]
    assert ra == rb
    assert (a.parent / ra["flags"]["file"]).read_bytes() == (b.parent / rb["flags"]["file"]).read_bytes()


def test_kill_9_during_training_loses_at_most_the_epoch_in_progress(tmp_path):
    protocol = smoke_protocol(tmp_path, 20)
    args = ["run", "--track", "smoke", "--defense", "pgd-at", "--seed", "0", "--seed", "1", "--protocol", protocol,
            "-q"]
    finish([*args, "--jobs", "2", *folders(tmp_path / "whole")], tmp_path, tmp_path / "whole.log")
    cut = tmp_path / "cut"
    seeds = [cut / "runs" / "smoke" / "pgd-at" / f"seed{k}" for k in (0, 1)]
    rng, kills = random.Random(7), 0
    for trial in range(3):
        proc = start([*args, "--jobs", "2", *folders(cut)], tmp_path, tmp_path / "cut.log")
        before = sum(epochs_logged(d) for d in seeds)
        if not wait_for(lambda before=before: sum(epochs_logged(d) for d in seeds) > before, proc, "an epoch"):
            break  # training finished before this trial's kill point
        time.sleep(rng.uniform(0, 0.6))
        workers = children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        deadline = time.monotonic() + 30
        while any(alive(w) for w in workers):
            assert time.monotonic() < deadline, f"workers {workers} outlived the killed atbench run"
            time.sleep(0.05)
        for run_dir in seeds:
            if (run_dir / "last.pt").is_file():  # every epoch logged before the kill is in the checkpoint
                assert load_verified_checkpoint(run_dir / "last.pt")["epoch"] >= epochs_logged(run_dir)
    assert kills >= 2, "too few kills landed during training"
    finish([*args, "--jobs", "2", *folders(cut)], tmp_path, tmp_path / "cut.log")
    for k, run_dir in enumerate(seeds):
        whole = tmp_path / "whole" / "runs" / "smoke" / "pgd-at" / f"seed{k}"
        assert [json.loads(line)["epoch"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()] == \
            list(range(1, 11))
        a = load_verified_checkpoint(whole / "last.pt")["model"]
        b = load_verified_checkpoint(run_dir / "last.pt")["model"]
        assert all(torch.equal(a[name], b[name]) for name in a)
        assert (whole / "best.pt").read_bytes() == (run_dir / "best.pt").read_bytes()
        same_record(whole / "record.json", run_dir / "record.json")
        assert not list(run_dir.glob(".*.tmp")), "a killed write left its temporary file behind"


def test_kill_9_during_evaluation_redoes_no_finished_pair(tmp_path):
    protocol = smoke_protocol(tmp_path, 400)
    train = ["train", "--track", "smoke", "--defense", "pgd-at", "--seed", "0", "-q",
             "--runs-dir", str(tmp_path / "trained")]
    finish(train, tmp_path, tmp_path / "train.log")
    trained = tmp_path / "trained" / "smoke" / "pgd-at" / "seed0"
    args = ["eval", "--track", "smoke", "--defense", "pgd-at", "--seed", "0", "--protocol", protocol, "-q"]
    for name in ("whole", "cut"):
        shutil.copytree(trained, tmp_path / name / "runs" / "smoke" / "pgd-at" / "seed0")
    finish([*args, *folders(tmp_path / "whole")], tmp_path, tmp_path / "whole.log")
    run_dir = tmp_path / "cut" / "runs" / "smoke" / "pgd-at" / "seed0"
    state_path = run_dir / "eval_state.json"

    def finished() -> dict[str, float]:
        return json.loads(state_path.read_text())["runtimes"] if state_path.is_file() else {}

    rng, kept, mid = random.Random(11), {}, 0
    for trial in range(3):
        proc = start([*args, *folders(tmp_path / "cut")], tmp_path, tmp_path / "cut.log")
        target = len(finished()) + 1
        if not wait_for(lambda target=target: len(finished()) >= target, proc, "a finished pair"):
            break
        time.sleep(rng.uniform(0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = finished()
        assert all(done[name] == seconds for name, seconds in kept.items())  # earlier pairs untouched
        kept = done
        mid += not (run_dir / "record.json").exists()
    assert mid >= 2, "too few kills landed during the evaluation"
    finish([*args, *folders(tmp_path / "cut")], tmp_path, tmp_path / "cut.log")
    final = finished()
    assert all(final[name] == seconds for name, seconds in kept.items()), "a finished pair was evaluated again"
    same_record(tmp_path / "whole" / "runs" / "smoke" / "pgd-at" / "seed0" / "record.json", run_dir / "record.json")


def test_two_runs_on_one_folder_take_turns_and_never_expose_a_half_written_file(tmp_path):
    protocol = smoke_protocol(tmp_path, 20)
    args = ["run", "--track", "smoke", "--defense", "pgd-at", "--defense", "trades", "--seed", "0",
            "--protocol", protocol,
            "--jobs", "1", *folders(tmp_path)]
    lock = tmp_path / "runs" / ".atbench.lock"
    first = start(args, tmp_path, tmp_path / "first.log")
    assert wait_for(lambda: lock.is_file() and str(first.pid) in lock.read_text(), first, "the first run's lock")
    refused = subprocess.run([sys.executable, "-m", "benchmark.commands.cli", *args, "--no-wait"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=TIMEOUT)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"is in use by another atbench process (pid {first.pid}: atbench run" in refused.stderr
    second = start(args, tmp_path, tmp_path / "second.log")
    reads = 0
    while first.poll() is None or second.poll() is None:  # every record and board read is whole JSON
        for path in [*tmp_path.glob("records/*/*.json"), *tmp_path.glob("boards/*.json"),
                     *tmp_path.glob("runs/smoke/*/seed0/*.json")]:
            try:
                json.loads(path.read_text())
                reads += 1
            except FileNotFoundError:
                pass
        time.sleep(0.01)
    assert first.returncode == 0 and second.returncode == 0
    waited = (tmp_path / "second.log").read_text()
    assert f"is in use by another atbench process (pid {first.pid}" in waited and "waiting for it to finish" in waited
    assert "trained already" in waited and "evaluated already" in waited and reads > 0
    board = json.loads((tmp_path / "boards" / "smoke-20.json").read_text())
    assert sorted(e["defense"] for e in board["entries"]) == ["pgd-at", "trades"]
    assert not list(tmp_path.rglob("*.tmp"))
