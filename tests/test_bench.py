"""`atbench bench`: the multi-eps case on a tiny trained model, its report, and the CLI's
errors. Timings are measured (pytest-benchmark), never asserted."""
from __future__ import annotations

import dataclasses
import json

import pytest

from benchmark.bench import Workload, markdown, multi_eps_vs_per_eps, run_cases, to_json
from benchmark.cli import main
from benchmark.data import load_dataset
from benchmark.errors import AtbenchError
from benchmark.evaluate import run_protocol
from tests.helpers import tiny_standard_model, white_box_protocol


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    bundle = load_dataset("synthetic")
    # eps where the tiny model is partly robust, so survivors and inherited breaks both occur
    protocol = dataclasses.replace(white_box_protocol(tmp_path_factory.mktemp("protocol")), eps=("0.1", "0.13", "0.16"))
    return Workload("tiny", tiny_standard_model(), protocol, bundle.test.x[:80], bundle.test.y[:80], "cpu")


def test_multi_eps_is_never_weaker_than_each_eps_from_scratch(workload):
    result = multi_eps_vs_per_eps(workload)
    columns = result.details["columns"]
    assert set(columns) == {f"{c.column}@{e}" for c in workload.protocol.columns for e in workload.protocol.eps}
    assert result.not_weaker
    for values in columns.values():
        assert values["robust_only_in_multi"] == 0
        assert values["multi_eps"] <= values["per_eps"]
    smallest = workload.protocol.eps[0]  # at the smallest eps both attack every point alike
    for c in workload.protocol.columns:
        assert columns[f"{c.column}@{smallest}"]["multi_eps"] == columns[f"{c.column}@{smallest}"]["per_eps"]
    accuracy = [columns[f"pgd@{e}"]["per_eps"] for e in workload.protocol.eps]
    assert accuracy[0] > accuracy[1] > accuracy[2] > 0  # the comparison is not trivial
    assert result.ours_s > 0 and result.reference_s > 0


def test_report_lists_every_case_and_column(workload):
    results = run_cases(workload, ["multi-eps"])
    text = markdown(workload, results)
    assert "| multi-eps |" in text and f"pgd@{workload.protocol.eps[-1]}" in text
    body = json.loads(json.dumps(to_json(workload, results)))
    assert body["cases"][0]["ratio"] == pytest.approx(results[0].ours_s / results[0].reference_s)
    with pytest.raises(AtbenchError, match="unknown bench case"):
        run_cases(workload, ["nope"])


def test_bench_without_a_trained_run_names_the_fix(tmp_path, capsys):
    assert main(["bench", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no trained pgd-at" in err and "atbench train" in err


def test_benchmark_multi_eps_evaluation(benchmark, workload):
    """Timing of the multi-eps protocol run on the tiny model (pytest-benchmark)."""
    result = benchmark.pedantic(run_protocol, args=(workload.model, workload.protocol, workload.x, workload.y),
                                kwargs={"progress": False}, rounds=2, iterations=1)
    assert set(result.flags) >= {"clean"}
