"""`atbench regress` for a development loop, on small record fixtures (`--current`) and without
training: where its own results go, seeds compared with seeds (and said so), what "improved"
means, and a train key that follows the defense's source. The loop itself, with a real defense
file edited between runs, is `tests/test_regress_dev_loop.py`."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from benchmark.commands.cli import main
from benchmark.commands.parser import build_parser
from benchmark.commands.regress import Results, compare, load_results, markdown, scratch_folders
from benchmark.core.registry import TRACKS
from benchmark.pipeline.train import train_key
from tests.fixtures_records import write_consistent

pytestmark = pytest.mark.system  # calls the CLI (in process)


def regress(capsys, *argv: str) -> tuple[int, str]:
    code = main(["regress", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def records(folder: Path, seeds: dict[int, float]) -> Path:
    """pgd-at records of these seeds in `folder`: seed -> robust rate (the same flags for the
    same rate, so equal rates are equal results)."""
    for seed, robust in seeds.items():
        write_consistent(folder, "pgd-at", seed, robust=robust, flag_seed=1)
    return folder


# -- where regress's own results go -------------------------------------------------------


def test_scratch_folders_default_under_the_runs_folder_as_the_help_says():
    args = build_parser().parse_args(["regress", "--against", "."])
    assert args.records_dir is None and args.boards_dir is None
    assert scratch_folders("my-runs", None, None, "ref") == (str(Path("my-runs/regress/records")),
                                                             str(Path("my-runs/regress/boards")))
    assert scratch_folders("my-runs", "r", "b", "ref") == ("r", "b")
    regress_parser = build_parser()._subparsers._group_actions[0].choices["regress"]
    helps = {a.dest: a.help for a in regress_parser._actions}
    assert "default: <runs-dir>/regress/records" in helps["records_dir"]
    assert "default: <runs-dir>/regress/boards" in helps["boards_dir"]
    assert "leaderboard" not in helps["records_dir"] + helps["boards_dir"]


def test_a_reference_inside_the_scratch_folder_is_refused_before_any_work(tmp_path, capsys):
    reference = records(tmp_path / "work" / "regress" / "records" / "synthetic-tiny", {0: 0.7})
    code, out = regress(capsys, "--track", "synthetic-tiny", "--seed", "0", "--against", reference,
                        "--runs-dir", tmp_path / "work")
    assert code == 2 and "where regress writes (and replaces) the current results" in out
    assert not (tmp_path / "work" / "synthetic-tiny").exists()


# -- seeds are compared with seeds --------------------------------------------------------


def test_extra_current_seeds_are_left_out_and_named(tmp_path, capsys):
    """Seed 0 is unchanged; seeds 1 and 2, absent from the reference, are much worse: their mean
    would be a regression, the seed-0 comparison is not."""
    reference = records(tmp_path / "ref", {0: 0.7})
    current = records(tmp_path / "cur", {0: 0.7, 1: 0.2, 2: 0.2})
    code, out = regress(capsys, "--against", reference, "--current", current)
    assert code == 0, out
    assert "seeds compared for pgd-at: 0; left out: 1, 2 of the current results" in out
    assert " 0 changed" in out


def test_extra_reference_seeds_are_left_out_and_named(tmp_path, capsys):
    reference = records(tmp_path / "ref", {0: 0.7, 1: 0.2, 2: 0.2})
    current = records(tmp_path / "cur", {0: 0.7})
    code, out = regress(capsys, "--against", reference, "--current", current)
    assert code == 0, out
    assert "seeds compared for pgd-at: 0; left out: 1, 2 of the reference" in out


def test_seed_limits_the_seeds_compared_with_current(tmp_path, capsys):
    reference = records(tmp_path / "ref", {0: 0.7, 1: 0.7})
    current = records(tmp_path / "cur", {0: 0.7, 1: 0.2})
    code, out = regress(capsys, "--against", reference, "--current", current)
    assert code == 1 and "seeds compared for pgd-at: 0, 1; left out: none" in out
    code, out = regress(capsys, "--against", reference, "--current", current, "--seed", "0")
    assert code == 0, out
    assert "seeds compared for pgd-at: 0; left out: 1 of the reference; 1 of the current results" in out


def test_no_seed_in_common_is_refused(tmp_path, capsys):
    code, out = regress(capsys, "--against", records(tmp_path / "ref", {0: 0.7}),
                        "--current", records(tmp_path / "cur", {1: 0.7}))
    assert code == 2 and "no seed to compare" in out and "Traceback" not in out


def test_a_board_of_other_seeds_is_refused(tmp_path, capsys):
    """A board holds the mean over its seeds: it cannot be limited to the seeds of the records."""
    folder = records(tmp_path / "ref", {0: 0.7, 1: 0.7, 2: 0.7})
    record = json.loads((folder / "pgd-at-seed0.json").read_text())
    board = tmp_path / "board.json"
    board.write_text(json.dumps({"protocol": record["protocol"], "entries": [
        {"defense": "pgd-at", "seeds": [0, 1, 2], **{k: record[k] for k in ("clean_acc", "robust_acc", "worst_case")}}
    ]}))
    code, out = regress(capsys, "--against", board, "--current", folder / "pgd-at-seed0.json")
    assert code == 2 and "holds the mean over seeds 0, 1, 2, which cannot be limited" in out
    code, out = regress(capsys, "--against", board, "--current", folder)
    assert code == 0 and "seeds compared for pgd-at: 0, 1, 2; left out: none" in out


def test_a_run_without_a_shared_seed_is_refused_before_training(tmp_path, capsys):
    reference = records(tmp_path / "ref", {5: 0.7})
    code, out = regress(capsys, "--track", "synthetic-tiny", "--defense", "pgd-at", "--seed", "0", "--jobs", "1",
                        "--against", reference, "--runs-dir", tmp_path / "work")
    assert code == 2 and "no seed to compare" in out
    assert not list((tmp_path / "work").rglob("train.json"))


# -- improved / regressed only beyond the tolerance or when significant -------------------


def _results(metrics: dict) -> Results:
    return Results("x", ("p", 1, "0" * 64), metrics)


def test_small_changes_are_within_tolerance_not_improved():
    reference = _results({"a": {"clean": 0.9, "pgd@0.3": 0.5, "cw@0.3": 0.5, "tpgd@0.3": 0.5}})
    current = _results({"a": {"clean": 0.9033, "pgd@0.3": 0.53, "cw@0.3": 0.47, "tpgd@0.3": 0.5}})
    status = {c.metric: c.status for c in compare(reference, current, 0.02)}
    assert status == {"clean": "within tolerance", "pgd@0.3": "improved", "cw@0.3": "REGRESSION",
                      "tpgd@0.3": "unchanged"}
    table = markdown(compare(reference, current, 0.02))
    assert "| a | clean | 0.9000 | 0.9033 | +0.0033 | within tolerance |" in table
    assert "3 changed, 1 improved, 1 regressions" in table and "tpgd" not in table
    assert "| a | tpgd@0.3 |" in markdown(compare(reference, current, 0.02), show_all=True)


def test_with_alpha_only_significant_changes_are_improved_or_regressed(tmp_path):
    current = load_results(write_consistent(tmp_path / "cur", robust=0.7, flag_seed=1).parent)
    few = load_results(write_consistent(tmp_path / "few", robust=0.7, flag_seed=1,
                                        flips={"pgd@0.3": range(0, 300, 100)}).parent)  # 3 points fewer
    many = load_results(write_consistent(tmp_path / "many", robust=0.7, flag_seed=1,
                                         flips={"pgd@0.3": range(300)}).parent)
    rise = {c.metric: c for c in compare(few, current, 0.0, 0.05)}["pgd@0.3"]
    assert rise.delta > 0 and rise.status == "not significant"
    assert {c.metric: c for c in compare(many, current, 0.0, 0.05)}["pgd@0.3"].status == "improved"
    assert {c.metric: c for c in compare(current, few, 0.0, 0.05)}["pgd@0.3"].status == "not significant"


# -- the train key follows the defense's source -------------------------------------------


def _defense_from(path: Path, source: str, monkeypatch):
    path.write_text(source)
    name = f"regress_loop_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module.Edited()


def test_the_train_key_changes_with_the_defense_source_only(tmp_path, monkeypatch):
    """Same name, config, track and seed: an edited file gets another key (so the runs cache
    trains it again); the same source at another path keeps it."""
    base = "from defenses.pgd_at import PGDAT\n\n\nclass Edited(PGDAT):\n    pass\n"
    track = TRACKS.get("synthetic-tiny")
    first = _defense_from(tmp_path / "a.py", base, monkeypatch)
    moved = _defense_from(tmp_path / "b.py", base, monkeypatch)
    edited = _defense_from(tmp_path / "c.py", base + "    # an edit\n", monkeypatch)
    assert first.name == moved.name == edited.name and first.config_dict() == edited.config_dict()
    assert train_key(track, first, 0) == train_key(track, moved, 0)
    assert train_key(track, first, 0) != train_key(track, edited, 0)
