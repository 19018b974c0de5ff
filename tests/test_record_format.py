"""The record format has one owner, `leaderboard.record`: the committed JSON Schema and the doc's
field table are generated from it and must be current; every committed record validates against
both the typed record and the JSON Schema; both reject the same structural faults; a field added
to the record module shows up in what is generated from it."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from benchmark.core.io import dumps_json
from leaderboard.flags import SANITY_FLAGS
from leaderboard.record import Record, RecordError, validate_record
from leaderboard.record_docs import DOC_PATH, SCHEMA_PATH, doc_with_table, json_schema
from tests.fixtures_records import make_record

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "leaderboard" / "records"
RECORD_FILES = sorted(RECORDS.rglob("*.json"))
STALE = "is stale: regenerate it with `python -m leaderboard.record_docs`"


def _validator():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.unit
def test_committed_schema_file_is_generated_from_the_record_module():
    assert SCHEMA_PATH.read_text() == dumps_json(json_schema()), f"{SCHEMA_PATH} {STALE}"


@pytest.mark.unit
def test_doc_field_table_is_generated_from_the_record_module():
    text = DOC_PATH.read_text()
    assert text == doc_with_table(text), f"the field table of {DOC_PATH} {STALE}"
    for name in Record.model_fields:
        assert f"| `{name}` |" in text


@pytest.mark.unit
def test_schema_names_the_cross_field_rules_and_the_sanity_flags():
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    for rule in ("protocol.eps", "num_classes", "pgd_l2_acc", "n_examples"):
        assert rule in schema["description"]
    sanity = schema["$defs"]["Sanity"]
    assert list(sanity["required"]) == list(SANITY_FLAGS) and sanity["additionalProperties"] is False


@pytest.mark.parametrize("path", RECORD_FILES, ids=lambda p: p.relative_to(RECORDS).as_posix())
@pytest.mark.unit
def test_committed_record_validates_and_round_trips_through_the_typed_record(path):
    record = json.loads(path.read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(record)]
    assert errors == []
    assert validate_record(copy.deepcopy(record), str(path)) == record
    assert Record.model_validate(record).model_dump(mode="json") == record  # no value changes type or form


@pytest.mark.unit
def test_fixture_record_is_a_valid_record():
    record = make_record()
    assert record["certified_l2"] is None and _validator().is_valid(record)
    assert Record.model_validate(record).model_dump(mode="json") == json.loads(json.dumps(record))


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
    "unknown sanity flag": _set("sanity", "made_up",
                                value={"fired": False, "value": 0.0, "threshold": 0.0, "detail": ""}),
    "unknown field in margins.input.per_class": _set("margins", "input", "per_class", "mean", value=[0.1] * 3),
    "missing top-level field": _delete("clean_acc"),
    "missing nested field": _delete("margins", "input", "median"),
    "missing sanity flag": _delete("sanity", "zero_gradients"),
    "missing provenance field": _delete("provenance", "utc_time"),
    "missing versions": _delete("versions"),
    "accuracy as a string": _set("clean_acc", value="0.98"),
    "class_names not a list": _set("class_names", value="012"),
    "protocol.eps a string": _set("protocol", "eps", value="0.3"),
    "certified_l2 a list": _set("certified_l2", value=[]),
    "randomized as 0": _set("defense", "randomized", value=0),
    "external as 1": _set("defense", "external", value=1),
    "config a list": _set("defense", "config", value=[1]),
    "clean accuracy 1.5": _set("clean_acc", value=1.5),
    "robust accuracy 1.5": _set("robust_acc", "pgd", "0.3", value=1.5),
    "per-class accuracy 1.5": _set("per_class", "worst_case", "0.3", 0, value=1.5),
    "negative accuracy": _set("worst_case", "0.1", value=-0.01),
    "uppercase sha256": _set("protocol", "sha256", value="A" * 64),
    "short sha256": _set("provenance", "checkpoint_sha256", value="ab" * 16),
    "schema_version 1": _set("schema_version", value=1),
    "schema_version true": _set("schema_version", value=True),
    "seed true": _set("seed", value=True),
    "seed above 2^31-1": _set("seed", value=2**31),
    "num_classes true": _set("num_classes", value=True),
    "votes 0": _set("votes", value=0),
    "per-class count true": _set("per_class", "n", 0, value=True),
    "bin count false": _set("margins", "logit", "clean", 0, value=False),
    "negative seed": _set("seed", value=-1),
    "n_examples 0": _set("protocol", "n_examples", value=0),
    "negative runtime": _set("runtime_s", "eval", value=-1.0),
    "unknown fidelity": _set("defense", "fidelity", value="approximate"),
    "unknown norm": _set("protocol", "norm", value="L7"),
    "empty defense id": _set("defense", "id", value=""),
    "empty git commit": _set("provenance", "git_commit", value=""),
    "bad utc time": _set("provenance", "utc_time", value="2026-11-21 23:59:59"),
    "eps zero": _set("protocol", "eps", value=["0.0", "0.2", "0.3"]),
    "duplicate eps": _set("protocol", "eps", value=["0.3", "0.2", "0.3"]),
    "eps key not an eps": _set("worst_case", value={"0.1": 0.9, "0.2": 0.8, "abc": 0.7}),
    "one bin edge": _set("margins", "logit", "edges", value=[0.0]),
}


@pytest.mark.unit
def test_the_unmutated_record_passes_both():
    record = make_record()
    assert validate_record(copy.deepcopy(record)) == record
    assert _validator().is_valid(record)


@pytest.mark.parametrize("name", list(MUTATIONS))
@pytest.mark.unit
def test_structural_fault_is_rejected_by_both(name):
    record = make_record()
    MUTATIONS[name](record)
    with pytest.raises(RecordError):
        validate_record(record)
    assert not _validator().is_valid(record), f"the JSON Schema accepts a record with {name}"


@pytest.mark.parametrize("eps", ["0.3", "8/255", "1e-2", "00.5", "10", "0.30", "3/007",
                                 "0", "0.0", "0/5", "0e5", "1.", ".5", "-0.1", "1/0", "a", "", "1e-100", "8 / 255"])
@pytest.mark.unit
def test_eps_pattern_accepts_exactly_what_the_validator_accepts(eps):
    record = make_record(eps=(eps,), primary=eps)
    try:
        validate_record(record)
        hand = True
    except RecordError:
        hand = False
    assert _validator().is_valid(record) == hand


@pytest.mark.system
def test_a_new_field_is_one_edit_of_the_record_module_and_the_generated_files_must_follow(tmp_path):
    """In a scratch copy, add a field to `Record` only: the staleness tests fail until
    `python -m leaderboard.record_docs` regenerates the schema and the doc table, which then name it."""
    for part in ("leaderboard", "benchmark", "docs"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("records", "boards", "__pycache__"))
    module = tmp_path / "leaderboard" / "record.py"
    text = module.read_text()
    anchor = '    track: Name = _f("training track")\n'
    assert anchor in text
    module.write_text(text.replace(anchor, anchor + '    mood: str = _f("how the run felt")\n'))
    check = ("import sys; from leaderboard import record_docs as r; from benchmark.core.io import dumps_json; "
             "stale = r.SCHEMA_PATH.read_text() != dumps_json(r.json_schema()); "
             "doc = r.DOC_PATH.read_text(); stale_doc = doc != r.doc_with_table(doc); "
             "print(stale, stale_doc, '`mood`' in doc, 'mood' in r.SCHEMA_PATH.read_text())")

    def run(code: str) -> str:
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert run(check) == "True True False False"
    subprocess.run([sys.executable, "-m", "leaderboard.record_docs"], cwd=tmp_path, check=True, capture_output=True)
    assert run(check) == "False False True True"
    changed = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts  # bytecode the runs above compiled
               and (ROOT / p.relative_to(tmp_path)).read_bytes() != p.read_bytes()]
    assert sorted(changed) == ["docs/record-format.md", "leaderboard/record.py",
                               "leaderboard/schema/record.schema.json"]
