"""tools/bench_ratios.py: ours/reference per benchmark group from pytest-benchmark's JSON, the
table it prints and the ratios file it writes."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "bench_ratios.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("bench_ratios", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench(group: str, side: str, fastest: float, median: float, rounds: int = 5) -> dict:
    """One benchmark as pytest-benchmark writes it (the fields the tool reads)."""
    return {"group": group, "name": f"test_x[{side}]", "params": {"side": side},
            "stats": {"min": fastest, "median": median, "rounds": rounds}}


def test_ratio_is_ours_over_the_reference_per_group(tool):
    rows = tool.ratios([bench("pgd", "reference", 2.0, 4.0), bench("pgd", "ours", 1.0, 3.0, rounds=3),
                        bench("at-step", "ours", 3.0, 3.0), bench("at-step", "reference", 2.0, 2.0)])
    assert [r["group"] for r in rows] == ["at-step", "pgd"]
    assert rows[1]["ratio_min"] == 0.5 and rows[1]["ratio_median"] == 0.75 and rows[1]["rounds"] == 3
    assert rows[0]["ratio_min"] == 1.5


def test_a_group_without_both_sides_is_an_error(tool):
    with pytest.raises(ValueError, match="group 'pgd' has sides \\['ours'\\], not ours and reference"):
        tool.ratios([bench("pgd", "ours", 1.0, 1.0)])


def test_main_prints_the_table_and_writes_the_ratios(tool, tmp_path, capsys):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"machine_info": {"cpu": "x"}, "datetime": "now",
                                "benchmarks": [bench("pgd", "ours", 1.0, 1.0), bench("pgd", "reference", 4.0, 4.0)]}))
    assert tool.main([str(path)]) == 0
    assert "| pgd | 1.0000 s | 4.0000 s | 0.25 | 0.25 | 5 |" in capsys.readouterr().out
    written = json.loads((tmp_path / "bench.ratios.json").read_text())
    assert written["machine_info"] == {"cpu": "x"} and written["ratios"][0]["ratio_min"] == 0.25


def test_main_fails_on_a_file_without_benchmarks(tool, tmp_path, capsys):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"machine_info": {}, "datetime": "now", "benchmarks": []}))
    assert tool.main([str(path)]) == 1
    assert "no benchmarks" in capsys.readouterr().err and not (tmp_path / "bench.ratios.json").exists()
