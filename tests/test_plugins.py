"""Defenses from outside atbench's tree: `--defense-file` (imported by path, also in the local
executor's worker processes) and installed packages' `atbench.defenses` entry points (imported
only when their name is looked up, never because a record or board mentions it)."""
import json
import sys
import textwrap
from pathlib import Path

import pytest

import benchmark.core.plugins as plugins
from benchmark.commands.cli import main
from benchmark.core.errors import AtbenchError
from benchmark.core.plugins import load_file
from benchmark.core.registry import DEFENSES, TRACKS
from benchmark.pipeline.job import plan
from benchmark.pipeline.protocol import protocol_for
from tests.fixtures_records import make_record, write_consistent
from tests.helpers import white_box_protocol

EXAMPLE = Path(__file__).parent / "example_defense"
EXAMPLE_MODULE = "atbench_example_defense"
HEADER = """
import dataclasses

import torch.nn.functional as F

from defenses.base import Defense, DefenseMeta, register


@dataclasses.dataclass(frozen=True)
class NoConfig:
    pass
"""


def defense_source(name: str) -> str:
    """A registered clean-CE defense called `name`."""
    return textwrap.dedent(f"""
        @register
        class D_{name.replace('-', '_')}(Defense):
            name = {name!r}
            Config = NoConfig
            meta = DefenseMeta(paper="p", venue="v", link="https://example.org")

            def loss(self, model, x, y, ctx):
                return F.cross_entropy(model(x), y)
    """)


pytestmark = pytest.mark.usefixtures("in_tree_defenses_only")


@pytest.fixture
def installed(monkeypatch):
    """The example package on sys.path as an installed distribution, not imported yet."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delitem(sys.modules, EXAMPLE_MODULE, raising=False)


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.unit
def test_defense_file_registers_its_defenses_once(tmp_path):
    path = write(tmp_path / "mine.py", HEADER + defense_source("file-ce") + defense_source("file-ce2"))
    assert load_file(path) == ("file-ce", "file-ce2")
    assert DEFENSES.get("file-ce").__module__ == plugins.module_name(Path(path).resolve())
    assert load_file(path) == ("file-ce", "file-ce2")  # loading again does not clash with itself
    assert TRACKS.get("synthetic-tiny").defense("file-ce2").name == "file-ce2"


@pytest.mark.parametrize("name,text,expected", [
    ("missing.py", None, "does not exist"),
    ("defense.txt", HEADER, "is not a .py file"),
    ("syntax.py", HEADER + "def broken(:\n", "failed to import: SyntaxError"),
    ("imports.py", "import atbench_no_such_module\n", "failed to import: ModuleNotFoundError: No module named"),
    ("raises.py", HEADER + "raise RuntimeError('boom')\n", "failed to import: RuntimeError: boom"),
    ("empty.py", HEADER, "registers no defense"),
    ("clash.py", HEADER + defense_source("file-first") + defense_source("pgd-at"), "'pgd-at' is already registered"),
])
@pytest.mark.system
def test_defense_file_errors_name_the_file_and_exit_2(tmp_path, capsys, name, text, expected):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    code = main(["train", "--track", "synthetic-tiny", "--defense-file", str(path), "-q",
                 "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(path) in err and expected in err
    assert f"defense file {path}" in err or "--defense-file" in err
    assert "file-first" not in DEFENSES.names()  # a failed file leaves the registry as it was
    assert not (tmp_path / "runs").exists()


@pytest.mark.system
def test_run_with_worker_processes_sees_the_defense_file(tmp_path):
    """Two spawned workers import the file in their initializer and train + evaluate with it."""
    path = write(tmp_path / "mine.py", HEADER + defense_source("file-ce"))
    protocol = white_box_protocol(tmp_path)
    code = main(["run", "--track", "synthetic-tiny", "--defense-file", path, "--defense", "file-ce",
                 "--seed", "0", "--seed", "1", "--jobs", "2", "--protocol", protocol.path, "-q",
                 "--runs-dir", str(tmp_path / "runs"), "--records-dir", str(tmp_path / "records"),
                 "--boards-dir", str(tmp_path / "boards")])
    assert code == 0
    for seed in (0, 1):
        record = json.loads((tmp_path / "records" / protocol.id / f"file-ce-seed{seed}.json").read_text())
        assert record["defense"]["id"] == "file-ce" and record["seed"] == seed
    board = json.loads((tmp_path / "boards" / f"{protocol.id}.json").read_text())
    assert [e["defense"] for e in board["entries"]] == ["file-ce"]


@pytest.mark.system
def test_installed_defense_is_listed_but_imported_only_when_named(installed, capsys):
    assert main(["ls", "defenses"]) == 0
    assert "example-smooth-at (installed)" in capsys.readouterr().out
    assert "example-smooth-at" not in DEFENSES.names()
    track = TRACKS.get("synthetic-tiny")
    jobs = plan(track, protocol_for(track), None, (0,), "cpu")  # `atbench run` without --defense
    assert "example-smooth-at" not in {job.defense for job in jobs}
    assert EXAMPLE_MODULE not in sys.modules
    cls = DEFENSES.get("example-smooth-at")
    assert EXAMPLE_MODULE in sys.modules and cls.__module__ == EXAMPLE_MODULE
    assert "example-smooth-at" in DEFENSES.names() and "example-smooth-at" not in DEFENSES.installed()


@pytest.mark.system
def test_records_and_boards_naming_a_plugin_never_import_it(installed, tmp_path, capsys):
    folder = tmp_path / "records" / "mnist5k-cnn"
    for flag_seed, name in enumerate(("example-smooth-at", "pgd-at")):
        write_consistent(folder, name, flag_seed=flag_seed)
    args = ["--records-dir", str(tmp_path / "records"), "--boards-dir", str(tmp_path / "boards")]
    assert main(["leaderboard", *args]) == 0
    assert "example-smooth-at" in (tmp_path / "boards" / "mnist5k-cnn.json").read_text()
    assert main(["leaderboard", *args]) == 0  # rebuilding next to an existing board
    board = tmp_path / "boards" / "mnist5k-cnn.json"
    assert main(["regress", "--against", str(board), "--current", str(folder)]) == 0
    assert main(["regress", "--against", str(folder), "--current", str(board)]) == 0
    assert main(["export", "robustbench", str(folder), "--out", str(tmp_path / "rb")]) == 0
    assert EXAMPLE_MODULE not in sys.modules and "example-smooth-at" not in DEFENSES.names()


@pytest.mark.system
def test_verify_imports_an_external_models_code_only_when_the_user_names_it(tmp_path, monkeypatch, capsys):
    (tmp_path / "hostile_model.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n"
                                               "def build():\n    raise SystemExit\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    record = make_record("hostile")
    record["defense"]["config"] = {"model": "hostile_model:build", "checkpoint": "w.pt"}
    path = tmp_path / "hostile-seed0.json"
    path.write_text(json.dumps(record))
    assert main(["verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert "is the record of an external model, 'hostile_model:build'" in err
    assert "pass --model hostile_model:build" in err
    assert not (tmp_path / "imported").exists() and "hostile_model" not in sys.modules


def broken_distribution(root: Path, entry: str, module_text: str) -> None:
    """An installed distribution `broken_dist` whose entry point `broken-at` is `entry`."""
    (root / "broken_dist.py").write_text(module_text)
    info = root / "broken_dist-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-dist\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[atbench.defenses]\nbroken-at = {entry}\n")


@pytest.mark.parametrize("entry,module_text,expected", [
    ("broken_dist:D", "raise ImportError('needs a GPU library')", "failed to import: ImportError: needs a GPU"),
    ("broken_dist:D", HEADER + defense_source("other-name").replace("@register", "") + "D = D_other_name\n",
     "is named 'other-name', not 'broken-at'"),
])
@pytest.mark.unit
def test_broken_installed_defense_is_a_user_error_naming_it(tmp_path, monkeypatch, entry, module_text, expected):
    broken_distribution(tmp_path, entry, module_text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_dist", raising=False)
    with pytest.raises(AtbenchError) as info:
        DEFENSES.get("broken-at")
    assert "installed defense 'broken-at' (broken_dist:D, distribution broken-dist)" in info.value.problem
    assert expected in info.value.problem
