"""Results that cannot be forged, clobbered or silently wrong: a board admits a record only if
its flags file is there, has the named hash and gives every number; publishing never replaces
another source's result without --replace; names are slugs and no path leaves its folder;
regress refuses a NaN tolerance and another protocol's reference; damaged checkpoints and bad
losses are named in one line."""
from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import pytest
import torch

from benchmark.commands.cli import main
from benchmark.core.errors import AtbenchError
from benchmark.core.names import check_name, inside
from benchmark.pipeline.job import run_dir_for
from leaderboard.build import write_board
from tests.fixtures_records import write_consistent


@pytest.fixture
def board_folder(tmp_path):
    folder = tmp_path / "records" / "mnist5k-cnn"
    for defense, robust in (("standard", 0.2), ("pgd-at", 0.6), ("trades", 0.7)):
        write_consistent(folder, defense, robust=robust, flag_seed=len(defense))
    return tmp_path


def _leaderboard(root, capsys) -> tuple[int, str]:
    code = main(["leaderboard", "--track", "mnist5k-cnn", "--records-dir", str(root / "records"),
                 "--boards-dir", str(root / "boards")])
    return code, capsys.readouterr().err


@pytest.mark.system
def test_consistent_records_build_a_board(board_folder, capsys):
    code, err = _leaderboard(board_folder, capsys)
    assert code == 0, err
    assert (board_folder / "boards" / "mnist5k-cnn.md").is_file()


@pytest.mark.system
def test_a_record_edited_by_hand_is_refused_naming_record_and_field(board_folder, capsys):
    path = board_folder / "records" / "mnist5k-cnn" / "standard-seed0.json"
    record = json.loads(path.read_text())
    record["worst_case"]["0.3"] = min(0.9, record["clean_acc"])  # an edited number, still a valid record
    record["robust_acc"]["autoattack"]["0.3"] = record["worst_case"]["0.3"]
    path.write_text(json.dumps(record))
    code, err = _leaderboard(board_folder, capsys)
    assert code == 2 and "Traceback" not in err
    assert str(path) in err and "robust_acc.autoattack.0.3" in err and "refused" in err
    assert not (board_folder / "boards").exists()  # nothing half-built


@pytest.mark.system
def test_a_record_whose_flags_file_is_deleted_or_swapped_is_refused(board_folder, capsys):
    folder = board_folder / "records" / "mnist5k-cnn"
    (folder / "trades-seed0.flags.npz").unlink()
    code, err = _leaderboard(board_folder, capsys)
    assert code == 2 and "trades-seed0.json" in err and "flags.file" in err
    (folder / "trades-seed0.flags.npz").write_bytes((folder / "pgd-at-seed0.flags.npz").read_bytes())
    code, err = _leaderboard(board_folder, capsys)
    assert code == 2 and "trades-seed0.json" in err and "flags.sha256" in err


@pytest.mark.unit
def test_write_board_admits_before_writing(board_folder):
    path = board_folder / "records" / "mnist5k-cnn" / "pgd-at-seed0.json"
    record = json.loads(path.read_text())
    record["clean_acc"] = 0.999
    path.write_text(json.dumps(record))
    with pytest.raises(AtbenchError, match="clean_acc"):
        write_board(board_folder / "records", "mnist5k-cnn", board_folder / "boards")
    assert not (board_folder / "boards").exists()


@pytest.fixture
def external(tmp_path):
    from benchmark.models.architectures import build_model
    from benchmark.pipeline.data import load_dataset

    bundle = load_dataset("synthetic")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model("cnn-tiny", bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std)
        path = tmp_path / f"weights{seed}.pt"
        torch.save(model.state_dict(), path)
        paths.append(path)
    protocol = (tmp_path / "tiny.toml")
    from benchmark.pipeline.protocol import PROTOCOL_DIR

    text = (PROTOCOL_DIR / "synthetic-tiny.toml").read_text().replace('id = "synthetic-tiny"', 'id = "tiny-check"')
    block = '[[attacks]]\nname = "autoattack"\nversion = "standard"\nseed = 0\n\n'
    protocol.write_text(text.replace(block, "").replace("n = 40", "n = 20"))
    dirs = ["--track", "synthetic-tiny", "--protocol", str(protocol), "-q", "--runs-dir", str(tmp_path / "runs"),
            "--records-dir", str(tmp_path / "records"), "--boards-dir", str(tmp_path / "boards")]
    return tmp_path, paths, dirs


@pytest.mark.system
def test_an_external_model_cannot_take_a_defense_name_and_never_clobbers_silently(external, capsys):
    tmp, (first, second), dirs = external
    for extra in ([], ["--replace"]):
        code = main(["eval", "--model", "cnn-tiny", "--checkpoint", str(first), "--name", "pgd-at", *extra, *dirs])
        err = capsys.readouterr().err
        assert code == 2 and "registered defense" in err
    assert main(["eval", "--model", "cnn-tiny", "--checkpoint", str(first), "--name", "mine", *dirs]) == 0
    record_path = tmp / "records" / "tiny-check" / "mine-seed0.json"
    record = json.loads(record_path.read_text())
    assert record["defense"]["external"] is True
    board = json.loads((tmp / "boards" / "tiny-check.json").read_text())
    assert board["entries"][0]["external"] is True
    assert "mine (external model)" in (tmp / "boards" / "tiny-check.md").read_text()
    before = record_path.read_bytes()
    assert main(["eval", "--model", "cnn-tiny", "--checkpoint", str(second), "--name", "mine", *dirs]) == 2
    assert "pass --replace" in capsys.readouterr().err and record_path.read_bytes() == before
    same_source = ["eval", "--model", "cnn-tiny", "--checkpoint", str(first), "--name", "mine", *dirs]
    assert main(same_source) == 0
    assert main(["eval", "--model", "cnn-tiny", "--checkpoint", str(second), "--name", "mine", "--replace", *dirs]) == 0
    replaced = json.loads(record_path.read_text())["provenance"]["checkpoint_sha256"]
    assert replaced != record["provenance"]["checkpoint_sha256"]


@pytest.mark.system
def test_an_architecture_without_weights_is_refused(external, capsys):
    _, _, dirs = external
    assert main(["eval", "--model", "cnn-tiny", "--name", "random", *dirs]) == 2
    assert "random weights" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../../../escaped", "/abs/escaped", "FGSM RS v2!", "a/b", "..", "", "x" * 65, "Up"])
@pytest.mark.unit
def test_names_that_are_not_slugs_never_become_paths(tmp_path, name):
    with pytest.raises(AtbenchError, match="not allowed"):
        check_name(name, "defense")
    with pytest.raises(AtbenchError):
        run_dir_for(tmp_path, "synthetic-tiny", name, 0)
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.unit
def test_no_path_leaves_its_root_even_through_a_link(tmp_path):
    root, outside = tmp_path / "runs", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "track").symlink_to(outside)
    with pytest.raises(AtbenchError, match="leaves its folder"):
        inside(root, Path("track") / "pgd-at")
    assert inside(root, Path("ok") / "pgd-at") == root / "ok" / "pgd-at"


@pytest.mark.system
def test_regress_refuses_a_nan_tolerance_and_another_protocols_reference(tmp_path, capsys):
    smoke = write_consistent(tmp_path / "smoke", "pgd-at", protocol_id="smoke", track="smoke").parent
    board = write_consistent(tmp_path / "mnist", "pgd-at").parent
    for tolerance in ("nan", "inf", "-0.1", "2"):
        assert main(["regress", "--against", str(board), "--current", str(board), "--tolerance", tolerance]) == 2
    assert "--tolerance" in capsys.readouterr().err
    assert main(["regress", "--against", str(board), "--current", str(smoke)]) == 2
    err = capsys.readouterr().err
    assert "protocol mnist5k-cnn v1" in err and "protocol smoke v1" in err and "not comparable" in err
    assert main(["regress", "--against", str(board), "--current", str(board)]) == 0


@pytest.mark.parametrize("content, words", [
    (b"this is a text file, not weights\n", "is not a PyTorch checkpoint"),
    (b"", "is empty"),
    ("truncated", "is truncated or damaged"),
    ("list", "holds a list, not a state_dict"),
])
@pytest.mark.unit
def test_damaged_checkpoints_are_named_not_followed(tmp_path, content, words):
    from benchmark.core.io import load_checkpoint

    buf = io.BytesIO()
    torch.save([torch.ones(2)] if content == "list" else {"model": {"w": torch.ones(64, 64)}}, buf)
    data = buf.getvalue()
    data = data[: len(data) // 2] if content == "truncated" else data if content == "list" else content
    path = tmp_path / "best.pt"
    path.write_bytes(data)
    with pytest.raises(AtbenchError, match=words):
        load_checkpoint(path)


@pytest.mark.parametrize("loss, words", [
    (lambda logits, y: torch.nn.functional.cross_entropy(logits, y, reduction="none"), "not a scalar"),
    (lambda logits, y: None, "is NoneType, not a tensor"),
    (lambda logits, y: torch.nn.functional.cross_entropy(logits, y).detach(), "detached"),
    (lambda logits, y: torch.nn.functional.cross_entropy(logits, y) * float("nan"), "became nan"),
])
@pytest.mark.system
def test_a_failing_loss_is_one_line_naming_defense_and_epoch(tmp_path, capsys, loss, words):
    from defenses.base import Defense, DefenseMeta

    class Broken(Defense):
        name = "broken-loss"
        meta = DefenseMeta(paper="p", venue="v", link="https://example.org")

        @dataclasses.dataclass(frozen=True)
        class Config:
            pass

        def loss(self, model, x, y, ctx):
            return loss(model(x), y)

    from benchmark.core.registry import DEFENSES, TRACKS
    from benchmark.pipeline.train import train

    track = dataclasses.replace(TRACKS.get("synthetic-tiny"), epochs=1)
    with pytest.raises(AtbenchError) as info:
        train(track, Broken(), 0, tmp_path / "run", progress=False)
    assert words in info.value.problem and "'broken-loss'" in info.value.problem and "epoch 1" in info.value.problem
    assert "broken-loss" not in DEFENSES.names()
