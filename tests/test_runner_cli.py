"""End to end on the tiny track: `atbench run` writes records and a board; a re-run retrains
and re-evaluates nothing and rewrites byte-identical boards; user errors exit with code 2 and
one message, never a traceback."""
import json
import shutil
import subprocess
import sys

import pytest

import benchmark.pipeline.steps as steps
from benchmark.commands.cli import main
from benchmark.core.io import sha256_file
from benchmark.core.lock import LOCK_NAME
from benchmark.pipeline.protocol import PROTOCOL_DIR
from leaderboard.record import load_record, validate_record
from tests.helpers import run_track
from benchmark.core.provenance import cpu_model
from tests.shared_run import DEFENSES, shared_tiny_run

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A copy of the session's shared run of DEFENSES (`tests.shared_run`; the re-run writes into it)."""
    shared, shared_boards = shared_tiny_run(tmp_path_factory)
    root = tmp_path_factory.mktemp("run") / "copy"
    shutil.copytree(shared, root)
    kwargs = dict(runs_dir=root / "runs", records_dir=root / "records", boards_dir=root / "boards")
    return root, kwargs, [root / p.relative_to(shared) for p in shared_boards]


def test_run_writes_valid_records_and_a_board(tiny_run):
    root, _, boards = tiny_run
    assert sorted(p.name for p in boards) == [f"synthetic-tiny{suffix}" for suffix in (
        ".classwise.png", ".cost.png", ".html", ".json", ".md", ".png", ".significance.png")]
    for name in DEFENSES:
        path = root / "records" / "synthetic-tiny" / f"{name}-seed0.json"
        record = validate_record(load_record(path), str(path))
        flags = path.parent / record["flags"]["file"]
        assert sha256_file(flags) == record["flags"]["sha256"]
        certified = record["certified_l2"]
        assert certified["radii"] == ["0.1", "0.5"] and certified["lipschitz_max"] > 0
        assert certified["lipschitz_method"] == "exact (float64 Gram matrices)"
        assert all(certified["certified_acc"][r] <= certified["pgd_l2_acc"][r] for r in certified["radii"])
        assert certified["certified_acc"]["0.1"] >= certified["certified_acc"]["0.5"]
        checkpoint = root / "runs" / "synthetic-tiny" / name / "seed0" / "best.pt"
        assert sha256_file(checkpoint) == record["provenance"]["checkpoint_sha256"]
        cost = record["cost"]  # one single-threaded CPU worker: core-seconds are the seconds
        assert cost["device"].endswith("1 threads)") and cost["device"].startswith(cpu_model())
        for phase, seconds in (("train", record["runtime_s"]["train"]), ("eval", record["runtime_s"]["eval"])):
            assert cost[phase]["unit"] == "core-seconds" and cost[phase]["seconds"] == seconds
            assert cost[phase]["device_seconds"] == seconds > 0
            assert 50 < cost[phase]["peak_memory_mib"] < 8192  # a Python process with torch: tens to hundreds of MiB
    board = json.loads((root / "boards" / "synthetic-tiny.json").read_text())
    assert [e["defense"] for e in board["entries"]] and board["primary_eps"] == "0.1"


def test_rerun_retrains_nothing_and_rewrites_identical_boards(tiny_run, monkeypatch):
    root, kwargs, boards = tiny_run
    before = {p: p.read_bytes() for p in boards}
    records_before = {p: p.read_bytes() for p in (root / "records").rglob("*") if p.is_file() and p.name != LOCK_NAME}

    def forbidden(*args, **kw):
        raise AssertionError("a finished step ran again")

    monkeypatch.setattr(steps, "train", forbidden)
    monkeypatch.setattr(steps, "run_protocol", forbidden)
    again = run_track("synthetic-tiny", DEFENSES, (0,), **kwargs).boards
    assert {p: p.read_bytes() for p in again} == before
    assert {p: p.read_bytes() for p in (root / "records").rglob("*")
            if p.is_file() and p.name != LOCK_NAME} == records_before


def test_changed_checkpoint_fails_its_hash_check(tiny_run, tmp_path):
    root, kwargs, _ = tiny_run
    run_dir = root / "runs" / "synthetic-tiny" / "standard" / "seed0"
    copy = tmp_path / "runs" / "synthetic-tiny" / "standard" / "seed0"
    copy.mkdir(parents=True)
    for f in run_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    done = json.loads((copy / "train.json").read_text())
    done["checkpoint"] = str(copy / "best.pt")
    (copy / "train.json").write_text(json.dumps(done))
    (copy / "eval_key.txt").unlink()
    data = bytearray((copy / "best.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "best.pt").write_bytes(bytes(data))
    code = main(["eval", "--track", "synthetic-tiny", "--defense", "standard", "-q",
                 "--runs-dir", str(tmp_path / "runs"), "--records-dir", str(tmp_path / "rec")])
    assert code == 2


@pytest.mark.parametrize("argv,expected", [
    (["run", "--track", "mnist-huge"], "unknown track 'mnist-huge'"),
    (["run", "--track", "synthetic-tiny", "--defense", "pgd-att"], "did you mean 'pgd-at'"),
    (["train", "--track", "synthetic-tiny", "--defense", "nope"], "unknown defense 'nope'"),
    (["run", "--track", "cifar10-prn18", "--defense", "standard", "--data-dir", "{tmp}/nowhere"],
     "cifar-10-batches-py"),
    (["run", "--track", "synthetic-tiny", "--protocol", "{tmp}/bad.toml"], "field 'version'"),
    (["run", "--track", "synthetic-tiny", "--protocol", "{tmp}/unknown_attack.toml"], "unknown attack 'fgsm-plus'"),
    (["run", "--track", "synthetic-tiny", "--device", "cuda"], "no CUDA GPU"),
    (["leaderboard", "--track", "synthetic-tiny", "--records-dir", "{tmp}/empty"], "atbench run"),
])
def test_user_errors_exit_2_with_one_message(tmp_path, capsys, argv, expected):
    good = (PROTOCOL_DIR / "synthetic-tiny.toml").read_text()
    (tmp_path / "bad.toml").write_text(good.replace("version = 2", 'version = "one"'))
    (tmp_path / "unknown_attack.toml").write_text(good.replace('name = "cw"', 'name = "fgsm-plus"'))
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv] + ["--runs-dir", str(tmp_path / "runs")]
                if argv[0] != "leaderboard" else [a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err and "fix:" in err and "Traceback" not in err
    assert err.count("atbench: error:") == 1


def test_console_script_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--track", "nope"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown track 'nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_ls_lists_everything(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for name in ("pgd-at", "autoattack", "mnist5k-cnn", "cifar10-prn18", "mnist5k", "cnn-mnist", "protocols:"):
        assert name in out


def test_a_gpu_index_this_machine_lacks_is_refused_before_any_work(monkeypatch):
    import torch

    from benchmark.core.errors import AtbenchError
    from benchmark.pipeline.runner import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_device("cuda:0")
    with pytest.raises(AtbenchError, match="has 1 CUDA GPU"):
        check_device("cuda:99")
