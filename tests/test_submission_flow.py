"""A defense from outside atbench's tree, the example package in tests/example_defense (found
through its entry point, `atbench.defenses`), goes through the whole submission flow:
validate, run, verify, regress against its committed reference record."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.commands.cli import main
from benchmark.core.registry import DEFENSES

pytestmark = pytest.mark.system

PACKAGE_ROOT = Path(__file__).resolve().parent / "example_defense"
REFERENCE = PACKAGE_ROOT / "reference" / "smoke"
NAME = "example-smooth-at"


def test_external_package_validate_run_verify_regress(tmp_path, monkeypatch, capsys, in_tree_defenses_only):
    monkeypatch.syspath_prepend(str(PACKAGE_ROOT))  # as if the package were pip-installed
    assert NAME not in DEFENSES.names()  # not registered in atbench's tree

    assert main(["validate", NAME, "-q"]) == 0
    assert "FAIL" not in capsys.readouterr().out

    dirs = ["--runs-dir", str(tmp_path / "runs"), "--records-dir", str(tmp_path / "records"),
            "--boards-dir", str(tmp_path / "boards")]
    assert main(["run", "--track", "smoke", "--defense", NAME, "--seed", "0", "--jobs", "1", "-q", *dirs]) == 0
    record = tmp_path / "records" / "smoke" / f"{NAME}-seed0.json"
    assert f"| [{NAME}]" in (tmp_path / "boards" / "smoke.md").read_text()
    capsys.readouterr()

    assert main(["verify", str(record), "--runs-dir", str(tmp_path / "runs"), "-q"]) == 0
    assert "verified" in capsys.readouterr().out

    junit = tmp_path / "junit.xml"
    # the reference was made on another machine: CPU numbers are bit-identical only between machines of
    # one CPU vendor, so the check is the paired test CI uses, not a fixed tolerance
    assert main(["regress", "--against", str(REFERENCE), "--current", str(record.parent), "--alpha", "0.05",
                 "--junit", str(junit)]) == 0
    assert 'failures="0"' in junit.read_text()
