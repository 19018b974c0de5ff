"""Evaluation: flags are consistent, the worst case is never above any attack, accuracy never
rises with eps, class-wise numbers agree with the totals, finished pairs are not redone."""
import numpy as np
import pytest

import benchmark.pipeline.evaluate as evaluate
from benchmark.core.errors import AtbenchError
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.evaluate import (
    aggregate,
    flag_key,
    run_protocol,
    select_test_subset,
    worst_case_predictions,
)
from benchmark.pipeline.protocol import load_protocol
from tests.helpers import tiny_standard_model, white_box_protocol

pytestmark = pytest.mark.unit

PROTOCOL = load_protocol("synthetic-tiny")


@pytest.fixture(scope="module")
def evaluated():
    bundle = load_dataset("synthetic")
    idx = select_test_subset(bundle.test.y.numpy(), PROTOCOL.n_examples, PROTOCOL.subset_seed)
    x, y = bundle.test.x[idx], bundle.test.y[idx]
    result = run_protocol(tiny_standard_model(), PROTOCOL, x, y, progress=False)
    return result.flags, y.numpy(), aggregate(result.flags, y.numpy(), PROTOCOL, bundle.num_classes)


def test_subset_is_stratified_seeded_and_sorted():
    labels = np.repeat(np.arange(10), 20)
    a = select_test_subset(labels, 50, 0)
    assert list(a) == sorted(a) and len(set(a)) == 50
    assert np.bincount(labels[a], minlength=10).tolist() == [5] * 10
    assert (a == select_test_subset(labels, 50, 0)).all()
    assert (a != select_test_subset(labels, 50, 1)).any()
    with pytest.raises(AtbenchError, match="lower test_subset.n"):
        select_test_subset(labels, 500, 0)


def test_the_model_is_partly_robust_so_the_properties_are_not_vacuous(evaluated):
    _, _, summary = evaluated
    worst = summary["worst_case"]
    assert summary["clean_acc"] > 0.8
    assert worst[PROTOCOL.eps[0]] > 0.2 and worst[PROTOCOL.eps[-1]] < summary["clean_acc"]


def test_worst_case_is_never_above_any_attack_and_never_rises_with_eps(evaluated):
    _, _, summary = evaluated
    for eps in PROTOCOL.eps:
        for attack, by_eps in summary["robust_acc"].items():
            assert summary["worst_case"][eps] <= by_eps[eps] <= summary["clean_acc"]
    for series in [summary["worst_case"], *summary["robust_acc"].values()]:
        values = [series[e] for e in PROTOCOL.eps]
        assert values == sorted(values, reverse=True)


def test_robust_points_are_clean_correct_and_stay_broken(evaluated):
    flags, _, _ = evaluated
    for column in PROTOCOL.columns:
        previous = flags["clean"]
        for eps in PROTOCOL.eps:
            current = flags[flag_key(column.column, eps)]
            assert not (current & ~previous).any()
            previous = current


def test_group_column_is_the_per_example_worst_case_of_its_members(evaluated):
    flags, _, summary = evaluated
    for eps in PROTOCOL.eps:
        both = flags[flag_key("tpgd-T0.5", eps)] & flags[flag_key("tpgd-T2", eps)]
        assert summary["robust_acc"]["tpgd"][eps] == pytest.approx(both.mean())


def test_per_class_numbers_agree_with_totals(evaluated):
    _, labels, summary = evaluated
    n = np.array(summary["per_class"]["n"])
    assert n.sum() == len(labels)
    weighted = float((np.array(summary["per_class"]["clean_acc"]) * n).sum() / n.sum())
    assert weighted == pytest.approx(summary["clean_acc"])
    for eps in PROTOCOL.eps:
        per_class = np.array(summary["per_class"]["worst_case"][eps])
        assert float((per_class * n).sum() / n.sum()) == pytest.approx(summary["worst_case"][eps])
        cw = summary["classwise"][eps]
        assert cw["worst_class_acc"] == pytest.approx(per_class.min())
        assert cw["spread"] == pytest.approx(per_class.max() - per_class.min())


def test_a_killed_evaluation_resumes_without_redoing_finished_pairs(tmp_path, monkeypatch):
    protocol = white_box_protocol(tmp_path)
    bundle = load_dataset("synthetic")
    x, y = bundle.test.x[:40], bundle.test.y[:40]
    state = tmp_path / "state.json"
    original = evaluate._attack_survivors
    calls = []

    def dies_on_the_fifth(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(evaluate, "_attack_survivors", dies_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        run_protocol(tiny_standard_model(), protocol, x, y, state_path=state, state_key="k", progress=False)
    calls.clear()
    monkeypatch.setattr(evaluate, "_attack_survivors", lambda *a: (calls.append(1), original(*a))[1])
    resumed = run_protocol(tiny_standard_model(), protocol, x, y, state_path=state, state_key="k", progress=False)
    total = len(protocol.columns) * len(protocol.eps)
    assert len(calls) == total - 4
    fresh = run_protocol(tiny_standard_model(), protocol, x, y, progress=False)
    assert all((resumed.flags[k] == fresh.flags[k]).all() for k in fresh.flags)
    assert all((resumed.predictions[k] == fresh.predictions[k]).all() for k in fresh.predictions)
    calls.clear()
    run_protocol(tiny_standard_model(), protocol, x, y, state_path=state, state_key="other", progress=False)
    assert len(calls) == total


def test_worst_case_predictions_take_the_first_breaking_column(tmp_path):
    protocol = white_box_protocol(tmp_path)
    bundle = load_dataset("synthetic")
    x, y = bundle.test.x[:40], bundle.test.y[:40]
    result = run_protocol(tiny_standard_model(), protocol, x, y, progress=False)
    labels = y.numpy()
    for eps in protocol.eps:
        adv = worst_case_predictions(result, protocol, eps)
        worst = np.logical_and.reduce([result.flags["clean"]] + [result.flags[flag_key(c.column, eps)]
                                                                 for c in protocol.columns])
        assert ((adv == labels) == worst).all()
        for column in protocol.columns:
            broken = result.flags["clean"] & ~result.flags[flag_key(column.column, eps)]
            assert (result.predictions[flag_key(column.column, eps)][broken] != labels[broken]).all()
