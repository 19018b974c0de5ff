"""What a user's machine installs: constraints that the public index can meet, and a package that
carries the official records and sweeps it reads."""
from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from benchmark.core.workspace import official_records, shipped_sweeps

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def test_constraints_carry_no_local_version_label():
    """`torch==2.13.0+cpu` exists on no public index; `torch==2.13.0` admits a local `+cpu`
    build where one is offered and the public build elsewhere (PEP 440)."""
    lines = [line.split("#")[0].strip() for line in (ROOT / "constraints.txt").read_text().splitlines()]
    pins = [Requirement(line) for line in lines if line]
    assert pins, "constraints.txt pins nothing"
    for pin in pins:
        for spec in pin.specifier:
            assert "+" not in spec.version, f"{pin}: a local version label cannot be met from the public index"
    torch = next(p for p in pins if p.name == "torch")
    assert torch.specifier.contains("2.13.0+cpu") and torch.specifier.contains("2.13.0")


def _package_data(package: str) -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["setuptools"]["package-data"][package]


@pytest.mark.parametrize("folder", [official_records(), shipped_sweeps()], ids=["records", "sweeps"])
def test_every_official_record_and_sweep_ships_in_the_wheel(folder):
    patterns = _package_data("leaderboard")
    files = [p.relative_to(ROOT / "leaderboard").as_posix() for p in folder.rglob("*")
             if p.is_file() and not p.name.startswith(".")]  # not the lock files commands leave
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert not missing, f"not in the wheel: {missing[:5]}"
