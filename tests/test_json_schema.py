"""The JSON Schema export of the record format: the committed file is current, every committed
record validates against it, and it rejects the structural faults the hand validator rejects."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Callable

import pytest

from benchmark.io import dumps_json
from leaderboard.flags import SANITY_FLAGS
from leaderboard.json_schema import SCHEMA_PATH, record_json_schema, write_json_schema
from leaderboard.schema import RecordError, validate_record
from tests.fixtures_records import make_record

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "leaderboard" / "records"
RECORD_FILES = sorted(RECORDS.rglob("*.json"))
PGD_AT = RECORDS / "mnist5k-cnn" / "pgd-at-seed0.json"


def _validator():
    schema = record_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _base() -> dict:
    """A real committed record when there is one, else a fixture record."""
    return json.loads(PGD_AT.read_text()) if PGD_AT.is_file() else make_record()


def test_committed_schema_file_is_current():
    assert SCHEMA_PATH == ROOT / "leaderboard" / "schema" / "record.schema.json"
    assert SCHEMA_PATH.read_text() == dumps_json(record_json_schema()), (
        "leaderboard/schema/record.schema.json is stale: regenerate it with `python -m leaderboard.json_schema`")


def test_schema_folder_holds_only_the_json_file():
    assert sorted(p.name for p in SCHEMA_PATH.parent.iterdir()) == ["record.schema.json"]


def test_write_json_schema_writes_canonical_json(tmp_path):
    path = write_json_schema(tmp_path / "sub" / "record.schema.json")
    assert json.loads(path.read_text()) == record_json_schema()


def test_schema_names_the_cross_field_rules_and_the_sanity_flags():
    schema = record_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "checked by atbench's validator" in schema["description"].lower()
    for rule in ("protocol.eps", "num_classes", "pgd_l2_acc", "n_examples"):
        assert rule in schema["description"]
    sanity = schema["properties"]["sanity"]
    assert list(sanity["required"]) == list(SANITY_FLAGS) and sanity["additionalProperties"] is False


def test_record_json_schema_returns_a_fresh_dict():
    schema = record_json_schema()
    schema["properties"]["clean_acc"]["$ref"] = "#/nowhere"
    schema["$defs"]["fraction"]["maximum"] = 100
    assert record_json_schema()["$defs"]["fraction"]["maximum"] == 1


@pytest.mark.parametrize("path", RECORD_FILES, ids=lambda p: p.relative_to(RECORDS).as_posix())
def test_committed_record_validates_against_the_json_schema(path):
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(json.loads(path.read_text()))]
    assert errors == []


def test_fixture_record_without_certified_block_validates():
    record = make_record()
    assert record["certified_l2"] is None
    assert _validator().is_valid(record)


def _parent(r, keys: tuple):
    for key in keys:
        r = r[key]
    return r


def _set(*path, value) -> Callable[[dict], None]:
    """A mutation setting the field at `path` (keys and list indices) to `value`."""
    return lambda r: _parent(r, path[:-1]).__setitem__(path[-1], value)


def _delete(*path) -> Callable[[dict], None]:
    """A mutation deleting the field at `path`."""
    return lambda r: _parent(r, path[:-1]).__delitem__(path[-1])


MUTATIONS = {
    "unknown top-level field": _set("leaderboard_rank", value=1),
    "unknown field in defense": _set("defense", "authors", value="A. Author"),
    "unknown field in a sanity flag": _set("sanity", "zero_gradients", "note", value=""),
    "unknown sanity flag": _set("sanity", "made_up", value={"fired": False, "value": 0.0, "threshold": 0.0, "detail": ""}),
    "unknown field in margins.input.per_class": _set("margins", "input", "per_class", "mean", value=[0.1] * 10),
    "missing top-level field": _delete("clean_acc"),
    "missing nested field": _delete("margins", "input", "median"),
    "missing sanity flag": _delete("sanity", "zero_gradients"),
    "missing provenance field": _delete("provenance", "utc_time"),
    "accuracy as a string": _set("clean_acc", value="0.98"),
    "class_names not a list": _set("class_names", value="0123456789"),
    "protocol.eps a string": _set("protocol", "eps", value="0.3"),
    "certified_l2 a list": _set("certified_l2", value=[]),
    "randomized as 0": _set("defense", "randomized", value=0),
    "config a list": _set("defense", "config", value=[1]),
    "clean accuracy 1.5": _set("clean_acc", value=1.5),
    "robust accuracy 1.5": _set("robust_acc", "pgd", "0.3", value=1.5),
    "per-class accuracy 1.5": _set("per_class", "worst_case", "0.3", 0, value=1.5),
    "negative accuracy": _set("worst_case", "0.1", value=-0.01),
    "uppercase sha256": _set("protocol", "sha256", value="A" * 64),
    "short sha256": _set("provenance", "checkpoint_sha256", value="ab" * 16),
    "schema_version 2": _set("schema_version", value=2),
    "schema_version true": _set("schema_version", value=True),
    "seed true": _set("seed", value=True),
    "num_classes true": _set("num_classes", value=True),
    "per-class count true": _set("per_class", "n", 0, value=True),
    "bin count false": _set("margins", "logit", "clean", 0, value=False),
    "negative seed": _set("seed", value=-1),
    "n_examples 0": _set("protocol", "n_examples", value=0),
    "negative runtime": _set("runtime_s", "eval", value=-1.0),
    "unknown fidelity": _set("defense", "fidelity", value="approximate"),
    "empty defense id": _set("defense", "id", value=""),
    "empty git commit": _set("provenance", "git_commit", value=""),
    "bad utc time": _set("provenance", "utc_time", value="2026-11-21 23:59:59"),
    "eps zero": _set("protocol", "eps", value=["0.0", "0.2", "0.3"]),
    "duplicate eps": _set("protocol", "eps", value=["0.3", "0.2", "0.3"]),
    "eps key not an eps": _set("worst_case", value={"0.1": 0.9, "0.2": 0.8, "abc": 0.7}),
    "one bin edge": _set("margins", "logit", "edges", value=[0.0]),
}


def test_the_unmutated_record_passes_both():
    record = _base()
    assert validate_record(copy.deepcopy(record)) == record
    assert _validator().is_valid(record)


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_structural_fault_is_rejected_by_both(name):
    record = _base()
    MUTATIONS[name](record)
    with pytest.raises(RecordError):
        validate_record(record)
    assert not _validator().is_valid(record), f"the JSON Schema accepts a record with {name}"


@pytest.mark.parametrize("eps", ["0.3", "8/255", "1e-2", "00.5", "10", "0.30", "3/007",
                                 "0", "0.0", "0/5", "0e5", "1.", ".5", "-0.1", "1/0", "a", "", "1e-100", "8 / 255"])
def test_eps_pattern_accepts_exactly_what_the_validator_accepts(eps):
    record = make_record(eps=(eps,), primary=eps)
    try:
        validate_record(record)
        hand = True
    except RecordError:
        hand = False
    assert _validator().is_valid(record) == hand
