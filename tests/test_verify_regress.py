"""`atbench verify` and `atbench regress` on a real smoke-track run of PGD-AT, against the
committed smoke records; a planted bug and hand-edited records must be caught."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
import torch.nn.functional as F

from benchmark.commands.cli import main
from benchmark.commands.regress import (
    Results,
    align_seeds,
    compare,
    junit_xml,
    load_results,
    markdown,
    metrics_of,
    planned,
)
from benchmark.core.errors import AtbenchError
from benchmark.core.io import sha256_bytes
from benchmark.pipeline.evaluate import aggregate
from benchmark.pipeline.protocol import load_protocol
from defenses.pgd_at import PGDAT

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "leaderboard" / "records" / "smoke"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """PGD-AT trained and evaluated on the smoke track (about 15 s)."""
    root = tmp_path_factory.mktemp("smoke")
    argv = ["run", "--track", "smoke", "--defense", "pgd-at", "--seed", "0", "--jobs", "1", "-q",
            "--runs-dir", str(root / "runs"),
            "--records-dir", str(root / "records"), "--boards-dir", str(root / "boards")]
    assert main(argv) == 0
    return root


def copy_record(smoke_run, tmp_path) -> Path:
    for f in (smoke_run / "records" / "smoke").glob("pgd-at-seed0.*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / "pgd-at-seed0.json"


def verify(record: Path, smoke_run, capsys) -> tuple[int, str]:
    code = main(["verify", str(record), "--runs-dir", str(smoke_run / "runs"), "-q"])
    return code, capsys.readouterr().out


@pytest.mark.system
def test_verify_passes_on_an_untouched_record(smoke_run, tmp_path, capsys):
    code, out = verify(copy_record(smoke_run, tmp_path), smoke_run, capsys)
    assert code == 0, out
    assert out.count("PASS") == 4 and "verified" in out


@pytest.mark.system
def test_an_official_record_verifies_against_its_shipped_checkpoint_with_no_run_at_hand(tmp_path, capsys):
    record = ROOT / "leaderboard" / "records" / "mnist5k-cnn" / "standard-seed0.json"
    code = main(["verify", str(record), "--runs-dir", str(tmp_path / "no-runs"), "--points", "10", "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    shipped = ROOT / "leaderboard" / "checkpoints" / "mnist5k-cnn" / "standard-seed0.pt"
    assert f"PASS  checkpoint hash: {shipped} matches the record" in out and out.count("PASS") == 4


@pytest.mark.system
def test_verify_fails_a_number_edited_by_hand(smoke_run, tmp_path, capsys):
    path = copy_record(smoke_run, tmp_path)
    record = json.loads(path.read_text())
    record["robust_acc"]["pgd"]["0.2"] = round(record["robust_acc"]["pgd"]["0.2"] + 0.1, 4)
    path.write_text(json.dumps(record))
    code, out = verify(path, smoke_run, capsys)
    assert code == 1
    assert "FAIL  numbers match the flags" in out and "robust_acc.pgd.0.2" in out


@pytest.mark.system
def test_verify_names_an_edited_defense_config_without_a_traceback(smoke_run, tmp_path, capsys):
    path = copy_record(smoke_run, tmp_path)
    record = json.loads(path.read_text())
    record["defense"]["config"] = {"bogus": 1}
    path.write_text(json.dumps(record))
    assert main(["verify", str(path), "--runs-dir", str(smoke_run / "runs"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "field 'defense.config' is not a valid pgd-at Config" in err and "Traceback" not in err


@pytest.mark.system
def test_verify_fails_an_edited_flags_file(smoke_run, tmp_path, capsys):
    path = copy_record(smoke_run, tmp_path)
    flags = tmp_path / "pgd-at-seed0.flags.npz"
    arrays = dict(np.load(flags))
    arrays["pgd@0.2"] = ~arrays["pgd@0.2"]
    np.savez(flags, **arrays)
    code, out = verify(path, smoke_run, capsys)
    assert code == 1 and "FAIL  flags file hash" in out


@pytest.mark.system
def test_verify_fails_a_forgery_consistent_with_its_flags(smoke_run, tmp_path, capsys):
    """Flags, hash and numbers forged together: only the re-evaluation can tell."""
    path = copy_record(smoke_run, tmp_path)
    record = json.loads(path.read_text())
    flags_path = tmp_path / record["flags"]["file"]
    arrays = dict(np.load(flags_path))
    for key in [k for k in arrays if arrays[k].dtype == bool and k != "clean"]:
        arrays[key] = arrays["clean"].copy()  # every correct point claimed robust everywhere
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    flags_path.write_bytes(buf.getvalue())
    flags = {k: v for k, v in arrays.items() if v.dtype == bool}
    record.update(aggregate(flags, arrays["labels"], load_protocol("smoke"), record["num_classes"]))
    record["flags"]["sha256"] = sha256_bytes(buf.getvalue())
    path.write_text(json.dumps(record))
    code, out = verify(path, smoke_run, capsys)
    assert code == 1
    assert "PASS  numbers match the flags" in out and "FAIL  re-evaluation matches" in out


@pytest.mark.system
def test_verify_fails_another_checkpoint(smoke_run, tmp_path, capsys):
    path = copy_record(smoke_run, tmp_path)
    other = tmp_path / "other.pt"
    other.write_bytes((smoke_run / "runs" / "smoke" / "pgd-at" / "seed0" / "last.pt").read_bytes())
    code = main(["verify", str(path), "--checkpoint", str(other), "-q"])
    out = capsys.readouterr().out
    assert code == 1 and "FAIL  checkpoint hash" in out and "re-evaluation" not in out


@pytest.mark.parametrize("mode", [[], ["--alpha", "0.05"]])
@pytest.mark.system
def test_regress_reproduces_the_committed_smoke_record(smoke_run, tmp_path, capsys, mode):
    junit = tmp_path / "junit.xml"
    code = main(["regress", "--against", str(COMMITTED / "pgd-at-seed0.json"), *mode,
                 "--current", str(smoke_run / "records" / "smoke" / "pgd-at-seed0.json"), "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 0, out
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "0" and int(suite.get("tests")) > 10


@pytest.mark.unit
def test_a_run_of_some_seeds_is_compared_with_those_seeds_of_the_reference():
    """`regress --seed 0` against a folder of three seeds compares with the seed-0 records, not
    with the mean over seeds (which would mix the training variance into the comparison)."""
    reference = load_results(COMMITTED)
    assert {it.record["seed"] for it in reference.items["pgd-at"]} == {0, 1, 2}
    seed0, _, lines = align_seeds(reference, load_results(COMMITTED / "pgd-at-seed0.json"), ["pgd-at"])
    record = json.loads((COMMITTED / "pgd-at-seed0.json").read_text())
    assert seed0.metrics["pgd-at"] == pytest.approx(metrics_of(record), abs=1e-12)
    assert seed0.metrics["pgd-at"] != reference.metrics["pgd-at"]  # the mean over seeds differs
    assert lines == ["seeds compared for pgd-at: 0; left out: 1, 2 of the reference"]
    with pytest.raises(AtbenchError, match="no seed to compare"):
        align_seeds(reference, planned(reference, [("pgd-at", 7)]), ["pgd-at"])


@pytest.mark.parametrize("mode, words", [([], "tolerance 0.02"), (["--alpha", "0.05"], "Holm-adjusted p = ")])
@pytest.mark.system
def test_regress_catches_a_loss_that_ignores_the_adversarial_examples(tmp_path, monkeypatch, capsys, mode, words):
    def clean_loss(self, model, x, y, ctx):  # the planted bug: trains on clean inputs only
        return F.cross_entropy(model(x), y)

    monkeypatch.setattr(PGDAT, "loss", clean_loss)
    junit = tmp_path / "junit.xml"
    code = main(["regress", "--track", "smoke", "--defense", "pgd-at", "--seed", "0", "--jobs", "1", "-q", *mode,
                 "--against", str(COMMITTED), "--runs-dir", str(tmp_path / "runs"),
                 "--records-dir", str(tmp_path / "records"), "--boards-dir", str(tmp_path / "boards"),
                 "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 1
    assert "| pgd-at | worst_case@0.2 |" in out and "REGRESSION" in out
    failures = [f.get("message") for f in ElementTree.parse(junit).getroot().iter("failure")]
    assert any("pgd-at worst_case@0.2 dropped" in m and words in m for m in failures), failures


# -- the comparison itself ----------------------------------------------------------------


def _results(metrics: dict) -> Results:
    return Results("x", ("p", 1, "0" * 64), metrics)


@pytest.mark.unit
def test_compare_tolerance_missing_results_and_improvements():
    reference = _results({"a": {"clean": 0.9, "pgd@0.3": 0.5}, "b": {"clean": 0.8}})
    current = _results({"a": {"clean": 0.88, "pgd@0.3": 0.47}})
    changes = {(c.defense, c.metric): c for c in compare(reference, current, 0.02)}
    assert not changes["a", "clean"].regressed  # a drop of exactly the tolerance passes
    assert changes["a", "pgd@0.3"].regressed
    assert changes["b", "clean"].regressed and changes["b", "clean"].current is None
    improved = compare(_results({"a": {"clean": 0.5}}), _results({"a": {"clean": 0.9}}))
    assert not improved[0].regressed and "improved" in markdown(improved)
    xml = ElementTree.fromstring(junit_xml(list(changes.values())))
    assert xml.find("testsuite").get("failures") == "2"


@pytest.mark.unit
def test_alpha_mode_separates_noise_from_a_real_drop_and_needs_flags(tmp_path):
    from tests.fixtures_records import write_consistent

    reference = write_consistent(tmp_path / "ref", "pgd-at", robust=0.7, flag_seed=1).parent
    noisy = write_consistent(tmp_path / "noisy", "pgd-at", robust=0.7, flag_seed=1,
                             flips={"pgd@0.3": range(0, 300, 100)}).parent  # 3 points lost
    broken = write_consistent(tmp_path / "broken", "pgd-at", robust=0.7, flag_seed=1,
                              flips={"pgd@0.3": range(300)}).parent  # every point lost
    ref = load_results(reference)
    by_metric = lambda current: {c.metric: c for c in compare(ref, load_results(current), 0.0, 0.05)}
    noise, drop = by_metric(noisy)["pgd@0.3"], by_metric(broken)["pgd@0.3"]
    assert noise.delta < 0 and not noise.regressed  # 3 points: within noise at alpha 0.05
    assert drop.regressed and drop.p_value < 1e-6
    assert compare(ref, load_results(noisy), 0.0)[0].regressed or any(
        c.regressed for c in compare(ref, load_results(noisy), 0.0))  # the tolerance 0 mode calls it a regression
    with pytest.raises(AtbenchError, match="board JSON has none"):
        compare(_results({"pgd-at": {"clean": 0.9}}), ref, alpha=0.05)


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "missing", "does not exist"),
    (lambda d: d, "holds no records"),
    (lambda d: (d / "x.json").write_text("{") and d / "x.json", "not valid JSON"),
    (lambda d: (d / "b.json").write_text('{"entries": [{"defense": "a"}]}') and d / "b.json", "board entry lacks"),
])
@pytest.mark.system
def test_regress_input_errors_exit_2(tmp_path, capsys, make, expected):
    path = make(tmp_path)
    assert main(["regress", "--against", str(path), "--current", str(COMMITTED)]) == 2
    assert expected in capsys.readouterr().err
