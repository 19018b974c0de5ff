"""`atbench eval --model ... --checkpoint ...`: a model trained elsewhere is evaluated under the
same protocol, its record joins the board; bad specs and unsafe checkpoints stop cleanly."""
import json
import pickle

import numpy as np
import pytest
import torch

from benchmark.commands.cli import main
from benchmark.core.io import sha256_file
from leaderboard.record import load_record
from tests.helpers import tiny_standard_model

pytestmark = pytest.mark.system

MODULE = '''
from benchmark.pipeline.data import load_dataset
from benchmark.models.architectures import build_model


def build():
    bundle = load_dataset("synthetic")
    return build_model("cnn-tiny", bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std)
'''


@pytest.fixture
def external(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    checkpoint = tmp_path / "weights.pt"
    torch.save(tiny_standard_model().state_dict(), checkpoint)
    dirs = ["--runs-dir", str(tmp_path / "runs"), "--records-dir", str(tmp_path / "records"),
            "--boards-dir", str(tmp_path / "boards"), "-q", "--track", "synthetic-tiny",
            "--protocol", str(tmp_path / "white-box.toml")]
    from tests.helpers import white_box_protocol

    white_box_protocol(tmp_path)
    return tmp_path, checkpoint, dirs


def _flags(path):
    record = load_record(path)
    with np.load(path.parent / record["flags"]["file"]) as data:
        return record, {k: data[k] for k in data.files}


def test_external_model_is_evaluated_and_joins_the_board(external):
    tmp, checkpoint, dirs = external
    assert main(["eval", "--model", "my_models:build", "--checkpoint", str(checkpoint), "--name", "mine"] + dirs) == 0
    assert main(["eval", "--model", "cnn-tiny", "--checkpoint", str(checkpoint), "--name", "same"] + dirs) == 0
    mine, mine_flags = _flags(tmp / "records" / "synthetic-tiny-white-box" / "mine-seed0.json")
    same, same_flags = _flags(tmp / "records" / "synthetic-tiny-white-box" / "same-seed0.json")
    assert mine["provenance"]["checkpoint_sha256"] == sha256_file(checkpoint)
    assert mine["defense"]["config"] == {"model": "my_models:build", "checkpoint": "weights.pt"}
    assert mine["worst_case"] == same["worst_case"] and mine["clean_acc"] > 0.8
    assert all((mine_flags[k] == same_flags[k]).all() for k in mine_flags)
    board = json.loads((tmp / "boards" / "synthetic-tiny-white-box.json").read_text())
    assert {e["defense"] for e in board["entries"]} == {"mine", "same"}


@pytest.mark.parametrize("args,expected", [
    (["--model", "no_such_module:build"], "cannot import module 'no_such_module'"),
    (["--model", "my_models:missing"], "has no attribute 'missing'"),
    (["--model", "my_models"], "unknown model 'my_models'"),
    (["--model", "cnn-cifar", "--checkpoint", "{ckpt}"], "does not fit model cnn-cifar"),
    (["--checkpoint", "{ckpt}"], "--checkpoint and --name need --model"),
    (["--model", "cnn-tiny", "--checkpoint", "{evil}"], "cannot be loaded safely"),
])
def test_bad_external_models_exit_2(external, capsys, args, expected):
    tmp, checkpoint, dirs = external

    class Evil:
        def __reduce__(self):
            return (exec, ("open('PWNED', 'w').write('x')",))

    evil = tmp / "evil.pt"
    evil.write_bytes(pickle.dumps(Evil()))
    argv = ["eval"] + [a.replace("{ckpt}", str(checkpoint)).replace("{evil}", str(evil)) for a in args] + dirs
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp / "PWNED").exists()
