"""Broken and hostile files: corrupted checkpoints fail their checks, checkpoints that would run
code are refused everywhere, and damaged run, record, board and protocol files are rejected with
the file and the field named, never with a traceback (hypothesis, hundreds of inputs each)."""
from __future__ import annotations

import dataclasses
import json
import pickle
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.commands.cli import main
from benchmark.core.errors import AtbenchError
from benchmark.core.io import (
    load_checkpoint,
    load_verified_checkpoint,
    sha256_file,
    state_digest,
)
from benchmark.core.registry import DEFENSES, TRACKS
from benchmark.pipeline.protocol import PROTOCOL_DIR, load_protocol
from benchmark.pipeline.run_files import read_eval_state, read_train_result
from benchmark.pipeline.train import train
from tests.fixtures_records import make_record
from tests.fuzzing import damaged_json_text

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ONE_EPOCH = dataclasses.replace(TRACKS.get("synthetic-tiny"), epochs=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch synthetic-tiny run: its folder and the TrainResult."""
    run_dir = tmp_path_factory.mktemp("run")
    return run_dir, train(ONE_EPOCH, DEFENSES.get("standard")(), 0, run_dir, progress=False)


class _RunsCode:
    """Unpickling this calls `open(path, "w")`: a checkpoint crafted to run code on load."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_checkpoint(path, sentinel):
    torch.save({"model": _RunsCode(sentinel)}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)


@FUZZ
@given(position=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
@pytest.mark.system
def test_a_flipped_byte_in_the_training_state_never_loads_silently(trained, tmp_path, position, bit):
    run_dir, _ = trained
    original = (run_dir / "last.pt").read_bytes()
    damaged = bytearray(original)
    damaged[int(position * len(damaged))] ^= 1 << bit
    path = tmp_path / "last.pt"
    path.write_bytes(bytes(damaged))
    try:
        state = load_verified_checkpoint(path)
    except AtbenchError as exc:
        assert str(path) in exc.problem
    else:  # a byte torch never reads (zip padding, a name): the contents are exactly the original's
        assert state_digest(state) == state_digest(load_verified_checkpoint(run_dir / "last.pt"))


@pytest.mark.system
def test_a_flipped_byte_in_the_evaluated_checkpoint_fails_its_sha256_check(trained, tmp_path, capsys):
    run_dir, result = trained
    runs = tmp_path / "runs"
    copy = runs / "synthetic-tiny" / "standard" / "seed0"
    shutil.copytree(run_dir, copy)
    (copy / "train.json").write_text(json.dumps({**result.__dict__, "checkpoint": str(copy / "best.pt")}))
    data = bytearray((copy / "best.pt").read_bytes())
    data[len(data) // 2] ^= 0x10
    (copy / "best.pt").write_bytes(bytes(data))
    with pytest.raises(AtbenchError, match="fails its sha256 check"):
        load_checkpoint(copy / "best.pt", result.checkpoint_sha256)
    code = main(["eval", "--track", "synthetic-tiny", "--defense", "standard", "--runs-dir", str(runs),
                 "--records-dir", str(tmp_path / "records"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "fails its sha256 check" in err and "best.pt" in err and "Traceback" not in err
    assert not (copy / "record.json").exists()


@pytest.mark.system
def test_checkpoints_that_would_run_code_are_refused_everywhere(trained, tmp_path, capsys):
    run_dir, result = trained
    sentinel = tmp_path / "code-ran"
    runs = tmp_path / "runs"
    copy = runs / "synthetic-tiny" / "standard" / "seed0"
    shutil.copytree(run_dir, copy)
    evil = tmp_path / "evil.pt"
    evil_checkpoint(evil, sentinel)
    with pytest.raises(AtbenchError, match="cannot be loaded safely"):
        load_checkpoint(evil)
    # the evaluated checkpoint, with its sha256 matching (a record made for it)
    shutil.copy(evil, copy / "best.pt")
    (copy / "train.json").write_text(json.dumps({**result.__dict__, "checkpoint": str(copy / "best.pt"),
                                                 "checkpoint_sha256": sha256_file(evil)}))
    common = ["--track", "synthetic-tiny", "--defense", "standard", "--runs-dir", str(runs), "-q"]
    commands = {
        "eval": ["eval", *common, "--records-dir", str(tmp_path / "records")],
        "eval --model": ["eval", "--track", "synthetic-tiny", "--model", "cnn-tiny", "--checkpoint", str(evil),
                         "--runs-dir", str(runs), "--records-dir", str(tmp_path / "records"), "-q"],
        "train (resume from last.pt)": ["train", *common],
    }
    (copy / "train.json").unlink()  # so that train resumes from last.pt ...
    shutil.copy(evil, copy / "last.pt")  # ... which is the crafted file
    code = main(commands["train (resume from last.pt)"])
    err = capsys.readouterr().err
    assert code == 2 and "last.pt cannot be loaded safely" in err and "Traceback" not in err
    (copy / "train.json").write_text(json.dumps({**result.__dict__, "checkpoint": str(copy / "best.pt"),
                                                 "checkpoint_sha256": sha256_file(evil)}))
    for name in ("eval", "eval --model"):
        code = main(commands[name])
        err = capsys.readouterr().err
        assert code == 2 and "cannot be loaded safely" in err and "Traceback" not in err, name
    assert not sentinel.exists()


def _rejected_naming(exc: AtbenchError, path) -> None:
    """The error names the file and either a field or that the file is not a JSON object."""
    assert str(path) in exc.problem
    assert "field " in exc.problem or "as JSON" in exc.problem or "JSON object" in exc.problem, exc.problem


@FUZZ
@given(data=st.data())
@pytest.mark.system
def test_damaged_train_json_is_rejected_naming_file_and_field(trained, tmp_path, data):
    _, result = trained
    path = tmp_path / "train.json"
    path.write_text(damaged_json_text(data, result.__dict__))
    try:
        loaded = read_train_result(path)
    except AtbenchError as exc:
        _rejected_naming(exc, path)
    else:
        assert 1 <= loaded.best_epoch <= loaded.epochs and 0 <= loaded.best_val_robust_acc <= 1


@FUZZ
@given(data=st.data())
@pytest.mark.unit
def test_damaged_eval_state_is_rejected_naming_file_and_field(tmp_path, data):
    state = {"key": "k", "runtimes": {"pgd@0.1": 1.5, "cw@0.1": 0.5},
             "preds": {"pgd@0.1": [0, -1, 2], "cw@0.1": [1, 1, -1], "pgd@0.1/apgd-ce": [0, 1, 0]}}
    path = tmp_path / "eval_state.json"
    path.write_text(damaged_json_text(data, state))
    try:
        loaded = read_eval_state(path, points=3)
    except AtbenchError as exc:
        _rejected_naming(exc, path)
    else:
        assert all(len(p) == 3 for p in loaded["preds"].values())


@FUZZ
@given(data=st.data())
@pytest.mark.system
def test_damaged_records_and_boards_reach_the_user_as_one_message(tmp_path, capsys, data):
    """`atbench regress` reading a damaged record, or a damaged board, exits 0, 1 or 2, and on 2
    prints one message naming the file: no traceback."""
    kind = data.draw(st.sampled_from(["record", "board"]))
    good = make_record() if kind == "record" else {"entries": [
        {"defense": "pgd-at", "clean_acc": 0.9, "robust_acc": {"pgd": {"0.3": 0.5}}, "worst_case": {"0.3": 0.4}}]}
    path = tmp_path / f"{kind}.json"
    path.write_text(damaged_json_text(data, good))
    code = main(["regress", "--against", str(path), "--current", str(path)])
    out = capsys.readouterr()
    assert code in (0, 1, 2) and "Traceback" not in out.err
    if code == 2:
        assert out.err.startswith("atbench: error: ") and str(path) in out.err


PROTOCOL = (PROTOCOL_DIR / "synthetic-tiny.toml").read_text()
TOML_VALUES = ['"x"', '""', "-1", "0", "7", "1e309", "-0.5", "true", "[]", '["a", 1]', '["0.1", "0.05"]',
               "{}", '{ n = 1 }', "nan", "inf", '"0.1"', '"8/255"', "3.5", '"Linf"', '"L2"', '"autoattack"']


@FUZZ
@given(data=st.data())
@pytest.mark.unit
def test_damaged_protocols_are_rejected_naming_file_and_field(tmp_path, data):
    lines = PROTOCOL.splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        if not lines:
            break
        i = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["value", "value", "delete", "duplicate", "new-field", "truncate"]))
        if action == "value" and " = " in lines[i]:
            lines[i] = lines[i].split(" = ")[0] + " = " + data.draw(st.sampled_from(TOML_VALUES))
        elif action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "new-field":
            lines.insert(i + 1, f"{data.draw(st.sampled_from(['colour', 'steps', 'n', 'eps']))} = "
                                f"{data.draw(st.sampled_from(TOML_VALUES))}")
        elif action == "truncate":
            lines = lines[:i]
    path = tmp_path / "p.toml"
    path.write_text("\n".join(lines) + "\n")
    try:
        protocol = load_protocol(path)
    except AtbenchError as exc:
        assert str(path) in exc.problem
        assert "not valid TOML" in exc.problem or "'" in exc.problem, exc.problem  # a quoted field or name
    else:
        assert protocol.primary_eps in protocol.eps and protocol.n_examples >= 1


BAD_MODELS = '''
import torch
from torch import nn

from benchmark.models.architectures import build_model


class Changed(nn.Module):
    def __init__(self, change):
        super().__init__()
        self.model, self.change = build_model("cnn-tiny", 10, (1, 28, 28), (0.5,), (0.5,)), change

    def forward(self, x):
        return self.change(self.model(x), x)


def nan():
    return Changed(lambda z, x: z * float("nan"))


def inf():
    return Changed(lambda z, x: z.index_fill(1, torch.tensor([0]), float("-inf")))


def five_classes():
    return Changed(lambda z, x: z[:, :5])


def nan_under_attack():  # finite on the clean points, NaN on every input an attack perturbs
    return Changed(lambda z, x: z * float("nan") if x.requires_grad else z)
'''


@pytest.mark.parametrize("model,expected", [
    ("nan", "model output contains NaN or Inf logits; the model is not scored"),
    ("inf", "model output contains NaN or Inf logits; the model is not scored"),
    ("five_classes", "model output has shape (16, 5), expected (batch, 10); the model is not scored"),
    ("nan_under_attack", "the model is not scored"),
])
@pytest.mark.system
def test_eval_reports_nan_inf_and_wrong_shape_models_and_scores_none(tmp_path, monkeypatch, capsys, model, expected):
    (tmp_path / "bad_models.py").write_text(BAD_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(["eval", "--track", "synthetic-tiny", "--model", f"bad_models:{model}", "-q",
                 "--runs-dir", str(tmp_path / "runs"), "--records-dir", str(tmp_path / "records"),
                 "--boards-dir", str(tmp_path / "boards")])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not list(tmp_path.rglob("record.json")) and not (tmp_path / "records").exists()
