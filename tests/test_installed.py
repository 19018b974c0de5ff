"""atbench as its users run it: the wheel built from this tree, installed (not editable) into a
fresh virtual environment, every command run from an empty folder outside the checkout.

Every file the commands write must land in that folder, and the installed package must not
change (its files are hashed before and after). The fresh environment gets the wheel alone
(`--no-deps`); its dependencies (torch and the rest) come from this test environment's
site-packages through a `.pth` file, which adds their folders without running this
environment's own (editable) atbench install.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "defenses", "attacks", "leaderboard")

MY_DEFENSE = '''
"""A researcher's own defense, outside atbench: PGD-AT under its own name."""
import dataclasses

import torch.nn.functional as F

from defenses.base import Defense, DefenseMeta, register


@register
class MyDefense(Defense):
    name = "mydef"
    meta = DefenseMeta(paper="My defense", venue="arXiv", link="https://example.org/mydef",
                       threat_models=("Linf", "L2"), fidelity="reference",
                       search_space=({"beta": 1.0}, {"beta": 2.0}, {"beta": 3.0}, {"beta": 4.0}))

    @dataclasses.dataclass(frozen=True)
    class Config:
        beta: float = 1.0

    def loss(self, model, x, y, ctx):
        return self.config.beta * F.cross_entropy(model(ctx.adversarial(model, x, y)), y)
'''

MY_MODEL = '''
"""A researcher's own model, outside atbench."""
from torch import nn


def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
'''


def _tree_hash(site: Path) -> dict[str, str]:
    """sha256 of every file of the installed atbench packages."""
    return {str(p.relative_to(site)): hashlib.sha256(p.read_bytes()).hexdigest()
            for pkg in PACKAGES for p in sorted((site / pkg).rglob("*")) if p.is_file()}


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _printed_defaults(help_text: str) -> dict[str, str]:
    """The default folder `--help` states for each `--*-dir` option ("default: X under the
    current folder")."""
    return dict(re.findall(r"(--[a-z]+-dir) [A-Z_]+\s+[^\n]*?\(default: (\S+) under the current folder", help_text))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the wheel of this tree installed (not editable): its `atbench`
    script and its site-packages."""
    base = tmp_path_factory.mktemp("installed")
    src = base / "src"  # building writes build/ and *.egg-info: never into the checkout
    src.mkdir()
    for name in (*PACKAGES, "pyproject.toml", "README.md"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    wheels = base / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(src)],
                   check=True)
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    wheel = next(wheels.glob("atbench-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz_atbench_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return env_dir / "bin" / "atbench", site


def test_installed_atbench_runs_from_an_empty_folder_and_writes_only_there(installed, tmp_path):
    script, site = installed
    work = tmp_path / "my-project"
    work.mkdir()
    (work / "mydef.py").write_text(MY_DEFENSE)
    (work / "mymodel.py").write_text(MY_MODEL)
    before = _tree_hash(site)
    env = {**os.environ, "HOME": str(tmp_path / "home"), "MPLCONFIGDIR": str(tmp_path / "home" / "mpl"),
           "COLUMNS": "1000"}  # --help on one line per option
    env.pop("ATBENCH_DATA_DIR", None)

    def atbench(*args: str, ok: tuple[int, ...] = (0,)) -> str:
        done = subprocess.run([str(script), *args], cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode in ok, f"atbench {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr
        return done.stdout

    where = atbench("ls", "tracks")
    assert "smoke" in where
    import_check = subprocess.run([str(script.parent / "python"), "-c", "import benchmark; print(benchmark.__file__)"],
                                  cwd=work, env=env, capture_output=True, text=True, check=True).stdout
    assert import_check.startswith(str(site)), f"atbench imported from {import_check}, not the installed wheel"

    atbench("run", "--track", "smoke", "--defense-file", "mydef.py", "--defense", "mydef", "--seed", "0", "-q")
    atbench("eval", "--track", "smoke", "--model", "mymodel:build", "--name", "my-model", "-q")
    atbench("tune", "--track", "synthetic-tiny", "--defense-file", "mydef.py", "--defense", "mydef", "-q")
    compared = atbench("compare", "mydef", "pgd-at", "--track", "smoke")
    assert "mydef vs pgd-at" in compared
    board_entry = atbench("compare", "leaderboard/boards/smoke.json:mydef", "pgd-at", "--track", "smoke")
    assert "mydef vs pgd-at" in board_entry
    atbench("regress", "--track", "smoke", "--defense-file", "mydef.py", "--defense", "mydef", "--seed", "0",
            "--against", "leaderboard/records/smoke", "-q", ok=(0, 1))
    atbench("leaderboard", "--track", "smoke", "--with-official")
    official = site / "leaderboard" / "records"  # the installed records, in a venv the user owns
    atbench("leaderboard", "--track", "smoke", "--records-dir", str(official), "--boards-dir", "official-boards")
    # the official entries come with their official attack records (best known, the attack board)
    atbench("leaderboard", "--track", "mnist5k-cnn", "--with-official", "--boards-dir", "official-boards")
    default_board = json.loads((work / "official-boards" / "mnist5k-cnn.json").read_text())
    assert all("best_known" in entry for entry in default_board["entries"])
    assert (work / "official-boards" / "mnist5k-cnn.attacks.md").is_file()
    # the official entries are attacked and verified from the checkpoints shipped with them, nothing trained
    attacked = atbench("attack", "--track", "smoke", "--attack", "bpda", "--with-official", "--runs-dir", "no-runs",
                       "-q")
    assert "pgd-at seed 2: leaderboard/attack_records/smoke/bpda--pgd-at-seed2.json" in attacked
    atbench("leaderboard", "--track", "smoke", "--with-official", "--boards-dir", "attacked-boards")
    assert "bpda" in (work / "attacked-boards" / "smoke.attacks.md").read_text()
    verified = atbench("verify", str(official / "smoke" / "trades-seed1.json"), "--runs-dir", "no-runs",
                       "--points", "10", "-q")
    assert verified.count("PASS") == 4 and verified.rstrip().endswith("verified")

    written = _files(work)
    printed = {cmd: _printed_defaults(atbench(cmd, "--help")) for cmd in ("run", "eval", "tune", "leaderboard")}
    for cmd, defaults in printed.items():  # each default the help prints is where the command wrote
        for option, folder in defaults.items():
            assert any(f.startswith(f"{folder}/") for f in written), f"{cmd} {option}: nothing under {folder}"
    assert printed["run"]["--runs-dir"] == "runs" and printed["tune"]["--sweeps-dir"] == "leaderboard/sweeps"
    board = (work / "leaderboard" / "boards" / "smoke.md").read_text()
    for entry in ("mydef", "my-model", "pgd-at", "trades"):  # the user's entries beside the official ones
        assert f"{entry}]" in board or f"| {entry} " in board, entry
    expected = {"leaderboard/records/smoke/mydef-seed0.json", "leaderboard/records/smoke/my-model-seed0.json",
                "leaderboard/sweeps/synthetic-tiny/mydef.json", "leaderboard/boards/smoke.md",
                "runs/smoke/mydef/seed0/best.pt", "official-boards/smoke.md"}
    assert expected <= written, sorted(expected - written)
    assert any(f.startswith("runs/regress/records/smoke/") for f in written), "regress keeps its scratch in runs/"
    assert not (work / "data").exists()
    after = _tree_hash(site)
    assert after == before, "a command wrote into the installed package"
    digest = hashlib.sha256(json.dumps(after, sort_keys=True).encode()).hexdigest()
    print(f"installed package {site}: {len(after)} files, sha256 of their hashes {digest} before and after")
    print("\n".join(sorted(written)))
