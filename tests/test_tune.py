"""`atbench tune` and the committed sweeps: every tuned defense has a sweep of the same budget on
each MNIST track whose threat model it trains under, every sweep is complete and current, its
winner follows the rule, and the tracks' settings are exactly the winners. Tuning never reads
the test split."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from benchmark.commands.cli import main
from benchmark.core.registry import DEFENSES, TRACKS
from benchmark.pipeline import data
from benchmark.core.tuning_rules import EDGE_EXTENSIONS, EDGE_RULE, next_setting
from benchmark.pipeline.selection import SELECTION_RULES
from benchmark.core.sweep_files import read_sweep
from benchmark.pipeline.sweeps import SWEEPS_DIR, sweep_source
from benchmark.pipeline.train import HARNESS_VERSION
from benchmark.pipeline.tune import TUNING_BUDGET, recipe_sha256, sweep_markdown, winner_index

SWEEP_FILES = sorted(SWEEPS_DIR.glob("*/*.json"))
MNIST_TRACKS = ("mnist5k-cnn", "mnist5k-cnn-l2")
TUNED = sorted(name for name in DEFENSES.names() if DEFENSES.get(name).meta.search_space)


def _trains_under(defense: str, norm: str) -> bool:
    meta = DEFENSES.get(defense).meta
    return meta.any_track_norm or norm in meta.threat_models


@pytest.mark.unit
def test_every_search_space_has_the_same_budget():
    assert TUNED, "no defense declares a search space"
    for name in TUNED:
        assert len(DEFENSES.get(name).meta.search_space) == TUNING_BUDGET, name


@pytest.mark.parametrize("track", MNIST_TRACKS)
@pytest.mark.unit
def test_every_tuned_defense_takes_its_setting_from_a_committed_sweep(track):
    settings = TRACKS.get(track)
    for defense in TUNED:
        if _trains_under(defense, settings.norm):
            source = sweep_source(track, defense)
            assert source is not None, f"{defense} has no committed sweep for {track}"
            assert settings.defense_configs[defense] == read_sweep(SWEEPS_DIR / f"{source}.json")["winner"]


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
@pytest.mark.unit
def test_committed_sweep_is_complete_current_and_its_winner_follows_the_rule(path):
    record = read_sweep(path)
    defense, track = DEFENSES.get(record["defense"]), TRACKS.get(record["track"])
    configs = [row["config"] for row in record["settings"]]
    assert record["budget"] == TUNING_BUDGET
    assert configs[:TUNING_BUDGET] == [dict(s) for s in defense.meta.search_space]
    assert record["recipe_sha256"] == recipe_sha256(track), "the track's recipe changed after the sweep: re-tune"
    rule = SELECTION_RULES[defense.meta.selection]
    assert (record["harness_version"], record["selection_rule"]) == (HARNESS_VERSION, rule)
    rows = record["settings"]
    assert record["winner"] == configs[winner_index(rows)]
    if "edge_rule" in record:  # made under the grid-edge rule: it was followed, to its end
        assert record["edge_rule"] == EDGE_RULE and record["edge_extensions"] == len(rows) - TUNING_BUDGET
        for k in range(TUNING_BUDGET, len(rows)):
            assert configs[k] == next_setting(configs[:k], configs[winner_index(rows[:k])], defense.meta.search_bounds)
        assert (len(rows) == TUNING_BUDGET + EDGE_EXTENSIONS
                or next_setting(configs, record["winner"], defense.meta.search_bounds) is None)
    else:  # made before the rule: only the declared settings
        assert len(rows) == TUNING_BUDGET
    assert path.with_suffix(".md").read_text() == sweep_markdown(record)
    source = f"{record['track']}/{record['defense']}"
    users = [t for t in TRACKS.names() if sweep_source(t, record["defense"]) == source]
    assert record["track"] in users
    for name in users:
        assert TRACKS.get(name).defense_configs[record["defense"]] == record["winner"], name


class _Untouchable:
    """Stands in for the test split: any use fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"tuning read the test split ({name})")

    def __len__(self):
        raise AssertionError("tuning read the test split (len)")


@pytest.mark.system
def test_tune_writes_a_sweep_of_every_setting_without_reading_the_test_split(tmp_path, monkeypatch, capsys):
    loader = data._load_cached.__wrapped__
    monkeypatch.setattr(data, "_load_cached",
                        lambda name, folder: dataclasses.replace(loader(name, folder), test=_Untouchable()))
    args = ["tune", "--track", "synthetic-tiny", "--defense", "trades", "--runs-dir", str(tmp_path / "runs"),
            "--sweeps-dir", str(tmp_path / "sweeps"), "-q"]
    assert main(args) == 0
    record = json.loads((tmp_path / "sweeps" / "synthetic-tiny" / "trades.json").read_text())
    space = [dict(s) for s in DEFENSES.get("trades").meta.search_space]
    configs = [row["config"] for row in record["settings"]]
    assert configs[:TUNING_BUDGET] == space and record["winner"] in configs
    assert len(configs) == TUNING_BUDGET + record["edge_extensions"]
    for k in range(TUNING_BUDGET, len(configs)):  # the grid-edge rule's settings
        assert configs[k] == next_setting(configs[:k], configs[winner_index(record["settings"][:k])])
    assert all(0.0 <= row["score"] <= 1.0 for row in record["settings"])
    assert len({row["checkpoint_sha256"] for row in record["settings"]}) == len(configs)  # one training each
    assert record["recipe_sha256"] == recipe_sha256(TRACKS.get("synthetic-tiny"))
    assert Path(tmp_path / "sweeps" / "synthetic-tiny" / "trades.md").read_text() == sweep_markdown(record)


@pytest.mark.system
def test_tune_refuses_a_defense_without_a_search_space(tmp_path, capsys):
    assert main(["tune", "--track", "synthetic-tiny", "--defense", "pgd-at", "--runs-dir", str(tmp_path / "runs"),
                 "--sweeps-dir", str(tmp_path / "sweeps"), "-q"]) == 2
    assert "declares 0 settings to tune" in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists()


@pytest.mark.unit
def test_a_damaged_shipped_sweep_stops_the_board_with_one_clear_error(tmp_path, monkeypatch):
    from benchmark.core.errors import AtbenchError
    from leaderboard import tuning

    (tmp_path / "mnist5k-cnn").mkdir()
    (tmp_path / "mnist5k-cnn" / "pgd-at.json").write_text('{"winner": [], "settings": []}')
    monkeypatch.setattr(tuning, "shipped_sweeps", lambda: tmp_path)
    with pytest.raises(AtbenchError, match="sweep record .*pgd-at.json is not readable"):
        tuning.tuning_summary("mnist5k-cnn/pgd-at")
    assert tuning.tuning_summary("mnist5k-cnn/mart") is None  # not shipped: no count, no error


def _pre_rule(record: dict, scores: dict[float, float]) -> dict:
    """`record`'s declared settings as a sweep made before the grid-edge rule, rescored by beta."""
    rows = [{k: v for k, v in row.items() if k != "edge_round"} | {"score": scores[row["config"]["beta"]]}
            for row in record["settings"][:TUNING_BUDGET]]
    kept = {k: v for k, v in record.items() if k not in ("edge_rule", "edge_extensions", "extended")}
    return kept | {"settings": rows, "winner": rows[winner_index(rows)]["config"]}


@pytest.mark.system
def test_extend_applies_the_grid_edge_rule_to_an_earlier_sweep_without_training_its_settings(tmp_path, capsys):
    sweeps, path = tmp_path / "sweeps", tmp_path / "sweeps" / "synthetic-tiny" / "trades.json"
    base = ["tune", "--track", "synthetic-tiny", "--defense", "trades", "--sweeps-dir", str(sweeps), "-q"]
    assert main([*base, "--runs-dir", str(tmp_path / "runs")]) == 0
    made = json.loads(path.read_text())
    low = min(row["config"]["beta"] for row in made["settings"][:TUNING_BUDGET])
    earlier = _pre_rule(made, {row["config"]["beta"]: (1.0 if row["config"]["beta"] == low else 0.5)
                               for row in made["settings"]})  # the smallest beta wins: an edge
    path.write_text(json.dumps(earlier))
    assert main([*base, "--runs-dir", str(tmp_path / "again"), "--extend"]) == 0
    record = read_sweep(path)
    configs = [row["config"] for row in record["settings"]]
    assert record["settings"][:TUNING_BUDGET] == [row | {"edge_round": 0} for row in earlier["settings"]]
    trained = sorted(p.name for p in (tmp_path / "again" / "tune").iterdir())
    assert trained == [f"setting{k}" for k in range(TUNING_BUDGET, len(configs))] and trained  # the new ones only
    assert configs[TUNING_BUDGET] == next_setting(configs[:TUNING_BUDGET], {"beta": low})
    assert record["edge_rule"] == EDGE_RULE and record["edge_extensions"] == len(configs) - TUNING_BUDGET
    assert record["provenance"] == earlier["provenance"]  # the declared settings' own
    assert record["extended"]["from_row"] == TUNING_BUDGET
    assert path.with_suffix(".md").read_text() == sweep_markdown(record)
    assert "added to this sweep later by `atbench tune --extend`" in sweep_markdown(record)


@pytest.mark.system
def test_extend_refuses_an_earlier_sweep_of_another_harness_and_writes_nothing(tmp_path, capsys):
    sweeps, path = tmp_path / "sweeps", tmp_path / "sweeps" / "synthetic-tiny" / "trades.json"
    base = ["tune", "--track", "synthetic-tiny", "--defense", "trades", "--sweeps-dir", str(sweeps),
            "--runs-dir", str(tmp_path / "runs"), "--extend", "-q"]
    assert main(base) == 2
    assert "there is no sweep record of trades" in capsys.readouterr().err
    path.parent.mkdir(parents=True)
    space = [dict(s) for s in DEFENSES.get("trades").meta.search_space]
    stale = {"harness_version": HARNESS_VERSION - 1, "recipe_sha256": recipe_sha256(TRACKS.get("synthetic-tiny")),
             "winner": space[0], "settings": [{"config": c, "score": 0.5, "val_clean_acc": 0.9} for c in space]}
    path.write_text(json.dumps(stale))
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "differs from this sweep in harness_version, protocol, seed, selection_rule" in err
    assert "without --extend" in err
    assert json.loads(path.read_text()) == stale and not (tmp_path / "runs" / "tune").exists()
