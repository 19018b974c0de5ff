"""The grid-edge rule of `atbench tune`: one step outward from a winner at an edge, geometric,
halfway to a bound it would cross, never a setting already tried, at most EDGE_EXTENSIONS times."""
import pytest

from benchmark.core.tuning_rules import EDGE_EXTENSIONS, next_setting, outward_step
from benchmark.pipeline.tune import TUNING_BUDGET, edge_job, tune

pytestmark = pytest.mark.unit


def test_a_step_continues_the_outermost_ratio_and_stops_halfway_to_a_bound():
    assert outward_step([0.5, 1.0, 2.0, 4.0], low=True) == 0.25
    assert outward_step([0.5, 1.0, 2.0, 4.0], low=False) == 8.0
    assert outward_step([1.0, 3.0, 6.0, 9.0], low=True) == pytest.approx(1 / 3, rel=1e-6)
    assert outward_step([0.2, 0.4, 0.6, 0.8], low=False, bounds=(0.0, 1.0)) == 0.9  # 1.0667 would leave (0, 1)
    assert outward_step([0.2, 0.5], low=False, bounds=(0.0, 1.0)) == 0.75


def test_only_keys_at_an_edge_move_and_an_inner_winner_adds_nothing():
    grid = [{"gamma": g} for g in (0.5, 1.0, 2.0, 4.0)]
    assert next_setting(grid, {"gamma": 0.5}) == {"gamma": 0.25}
    assert next_setting(grid, {"gamma": 1.0}) is None
    pairs = [{"mu": 30.0, "r0": 2.2}, {"mu": 100.0, "r0": 4.0}, {"mu": 300.0, "r0": 8.0}, {"mu": 1000.0, "r0": 8.0}]
    assert next_setting(pairs, pairs[0]) == {"mu": 9.0, "r0": 1.21}
    assert next_setting(pairs, pairs[2]) == {"mu": 300.0, "r0": 16.0}  # mu 300 is inside its axis, r0 8 at its top
    square = [{"alpha": a, "beta": b} for a in (0.2, 0.5) for b in (3.0, 6.0)]
    assert next_setting(square, {"alpha": 0.5, "beta": 3.0}, {"alpha": (0.0, 1.0)}) == {"alpha": 0.75, "beta": 1.5}
    tried = grid + [{"gamma": 0.25}]
    assert next_setting(tried, {"gamma": 0.5}) is None  # the extension lost: the winner is back inside the grid


class _Job:
    """The fields `tune` and `edge_job` read of a job."""

    def __init__(self, defense):
        self.defense = defense


def test_tune_extends_while_the_new_setting_wins_at_an_edge_up_to_the_limit(monkeypatch):
    import benchmark.pipeline.tune as tune_module

    def setting_job(job, index, setting):
        return (job.defense, index, setting)

    monkeypatch.setattr(tune_module, "setting_job", setting_job)
    monkeypatch.setattr(tune_module, "tune_jobs", lambda job: [setting_job(job, i, {"gamma": g})
                                                            for i, g in enumerate((0.5, 1.0, 2.0, 4.0))])
    monkeypatch.setattr(tune_module.DEFENSES, "get", lambda name: type("D", (), {"meta": type("M", (), {
        "search_bounds": {}})}))
    scores = {"small": lambda g: 1 / g, "inner": lambda g: -abs(g - 1.0), "once": lambda g: 1.0 if g == 0.25 else 0.5 - g}
    rounds = []

    def run(settings):
        rounds.append(len(settings))
        return [{"config": s, "score": scores[d](s["gamma"]), "val_clean_acc": 0.9} for d, _, s in settings]

    rows = tune([_Job("small"), _Job("inner"), _Job("once")], run)
    gammas = [[row["config"]["gamma"] for row in sweep] for sweep in rows]
    assert gammas[0] == [0.5, 1.0, 2.0, 4.0, 0.25, 0.125]  # still winning at the edge: stops at the limit
    assert len(gammas[0]) == TUNING_BUDGET + EDGE_EXTENSIONS
    assert gammas[1] == [0.5, 1.0, 2.0, 4.0]  # 1.0 wins inside the grid
    assert gammas[2] == [0.5, 1.0, 2.0, 4.0, 0.25, 0.125]  # 0.25 wins, at the edge: one more, which loses
    assert [row["edge_round"] for row in rows[0]] == [0, 0, 0, 0, 1, 2]
    assert rounds == [12, 2, 2]
    assert edge_job(_Job("small"), rows[0]) is None
