"""The record validator: accepts valid records, rejects malformed ones naming file and field."""
from __future__ import annotations

import copy
import json
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.core.errors import AtbenchError
from leaderboard.record import SCHEMA_VERSION, RecordError, load_record, validate_record
from tests.fixtures_records import make_record
from tests.fuzzing import key_paths, mutate

pytestmark = pytest.mark.unit

FREE_FORM = {"defense.config", "defense.recipe_overrides", "attacks", "provenance.packages",
             "provenance.seeds"}


def _dotted(path: tuple) -> str:
    s = ""
    for k in path:
        s += f"[{k}]" if isinstance(k, int) else (f".{k}" if s else k)
    return s


def _set(rec: dict, path: tuple, value: Any) -> dict:
    node = rec
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return rec


def _mutated(fn: Callable[[dict], Any]) -> dict:
    rec = make_record()
    fn(rec)
    return rec


def test_valid_record_is_accepted_and_returned():
    rec = make_record()
    assert validate_record(rec, "r.json") is rec
    assert SCHEMA_VERSION == 2
    assert issubclass(RecordError, AtbenchError)


@pytest.mark.parametrize("mutate", [
    lambda r: r.update(clean_acc=1),                      # an int where a float is expected
    lambda r: r["provenance"].update(git_commit="0123abc"),
    lambda r: r["defense"].update(config={}, link="", venue=""),
    lambda r: r["defense"]["recipe_overrides"].update(lr=0.05, sched=[1, {"a": None}]),
])
def test_valid_variants_are_accepted(mutate):
    validate_record(_mutated(mutate))


def test_single_eps_with_fraction_string_and_one_class():
    validate_record(make_record(eps=("8/255",), primary="8/255", num_classes=1))


@pytest.mark.parametrize("mutate, field, words", [
    (lambda r: r.update(extra=1), "extra", "not a known field"),
    (lambda r: r["defense"].update(color="red"), "defense.color", "not a known field"),
    (lambda r: r["classwise"]["0.3"].update(mean=0.5), "classwise.0.3.mean", "not a known field"),
    (lambda r: r["provenance"].pop("utc_time"), "provenance.utc_time", "missing"),
    (lambda r: r.pop("clean_acc"), "clean_acc", "missing"),
    (lambda r: r.update(track=3), "track", "must be a string"),
    (lambda r: r.update(clean_acc="0.9"), "clean_acc", "must be a number"),
    (lambda r: r["robust_acc"]["pgd"].update({"0.3": 1.5}), "robust_acc.pgd.0.3", "[0, 1]"),
    (lambda r: r["worst_case"].update({"0.1": -0.01}), "worst_case.0.1", ">= 0"),
    (lambda r: r["attacks"].update(extra="X()"), "robust_acc", "columns and groups"),
    (lambda r: r["attack_groups"].update(tpgd=["tpgd-T2"]), "attack_groups.tpgd", "attack columns"),
    (lambda r: r.update(votes=0), "votes", ">= 1"),
    (lambda r: r.update(seed=2**31), "seed", "at most 2147483647"),
    (lambda r: r.update(clean_acc=True), "clean_acc", "boolean"),
    (lambda r: r.update(num_classes=True), "num_classes", "boolean"),
    (lambda r: r["per_class"]["n"].__setitem__(0, True), "per_class.n[0]", "boolean"),
    (lambda r: r.update(seed=1.0), "seed", "must be an integer"),
    (lambda r: r.update(clean_acc=float("nan")), "clean_acc", "finite"),
    (lambda r: r["worst_case"].pop("0.2"), "worst_case", "eps keys"),
    (lambda r: r["robust_acc"]["pgd"].update({"0.4": 0.5}), "robust_acc.pgd", "eps keys"),
    (lambda r: r["classwise"].pop("0.1"), "classwise", "eps keys"),
    (lambda r: r["per_class"]["clean_acc"].pop(), "per_class.clean_acc", "num_classes is 3"),
    (lambda r: r.update(class_names=["a"]), "class_names", "num_classes is 3"),
    (lambda r: r["per_class"]["robust_acc"].pop("pgd"), "per_class.robust_acc", "attacks"),
    (lambda r: r.update(schema_version=1), "schema_version", "schema_version 2"),
    (lambda r: r["protocol"].update(primary_eps="0.5"), "protocol.primary_eps", "not one of"),
    (lambda r: r["protocol"].update(eps=["0.1", "0.1", "0.3"]), "protocol.eps", "duplicate"),
    (lambda r: r["protocol"].update(eps=["0.1", "big", "0.3"]), "protocol.eps[1]", "positive number"),
    (lambda r: r["protocol"].update(sha256="hex"), "protocol.sha256", "sha256"),
    (lambda r: r["attacks"].update(pgd=3), "attacks.pgd", "must be a string"),
    (lambda r: r["provenance"]["seeds"].update(train=0.5), "provenance.seeds.train", "integer"),
    (lambda r: r["provenance"].update(git_commit=5), "provenance.git_commit", "must be a string"),
    (lambda r: r["provenance"].update(utc_time="yesterday"), "provenance.utc_time", "UTC"),
    (lambda r: r["classwise"]["0.3"].update(worst_class=3), "classwise.0.3.worst_class", "[0, 2]"),
    (lambda r: r["per_class"]["n"].__setitem__(0, 99), "per_class.n", "n_examples"),
    (lambda r: r["defense"]["config"].update(x=float("inf")), "defense.config.x", "finite"),
    (lambda r: r.update(robust_acc={}), "robust_acc", "non-empty"),
])
def test_invalid_records_are_rejected_naming_file_and_field(mutate, field, words):
    with pytest.raises(RecordError) as info:
        validate_record(_mutated(mutate), source="records/x/seed0.json")
    msg = str(info.value)
    assert "records/x/seed0.json" in msg
    assert info.value.field == field and f"`{field}`" in msg
    assert words in msg


def test_non_object_record_is_rejected():
    with pytest.raises(RecordError, match="the record must be an object"):
        validate_record([1, 2], source="r.json")


def test_every_required_field_is_required():
    base = make_record()
    for path in key_paths(base):
        if isinstance(path[-1], int) or any(_dotted(path[:i]) in FREE_FORM for i in range(len(path))):
            continue
        rec = copy.deepcopy(base)
        node = rec
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
        with pytest.raises(RecordError) as info:
            validate_record(rec, source="r.json")
        assert info.value.field is not None, _dotted(path)


def test_load_record_round_trip(tmp_path):
    path = tmp_path / "record.json"
    path.write_text(json.dumps(make_record()))
    assert load_record(path) == make_record()


def test_load_record_truncated_json_names_file_and_position(tmp_path):
    path = tmp_path / "record.json"
    text = json.dumps(make_record(), indent=2)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(RecordError) as info:
        load_record(path)
    msg = str(info.value)
    assert str(path) in msg and "not valid JSON" in msg and "line" in msg and "column" in msg


@pytest.mark.parametrize("text, words", [
    ("", "not valid JSON"), ("[1]", "must be an object"),
    (json.dumps(_mutated(lambda r: r.update(clean_acc=float("nan")))), "`clean_acc` must be a finite"),
])
def test_load_record_rejects_bad_files(tmp_path, text, words):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(RecordError, match=words) as info:
        load_record(path)
    assert str(path) in str(info.value)


def test_load_record_invalid_record_names_the_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_mutated(lambda r: r.update(clean_acc=2))))
    with pytest.raises(RecordError, match="clean_acc") as info:
        load_record(path)
    assert str(path) in str(info.value)


def test_load_record_missing_file(tmp_path):
    with pytest.raises(RecordError, match="cannot be read"):
        load_record(tmp_path / "nope.json")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_mutations_are_accepted_or_rejected_cleanly(data):
    rec = mutate(data, make_record())
    try:
        validate_record(rec, source="m.json")
    except RecordError as exc:
        assert str(exc).startswith("m.json: ")
    else:
        validate_record(json.loads(json.dumps(rec)), source="m.json")


def test_certified_accuracy_above_l2_pgd_is_rejected():
    record = make_record()
    record["certified_l2"] = {"radii": ["0.5", "1.0"], "certified_acc": {"0.5": 0.4, "1.0": 0.2},
                              "pgd_l2_acc": {"0.5": 0.8, "1.0": 0.6}, "pgd_l2_steps": 50,
                              "lipschitz_max": 3.0,
                                  "lipschitz_method": "exact (float64 Gram matrices)", "median_radius": 0.6}
    validate_record(record, "r.json")
    record["certified_l2"]["certified_acc"]["1.0"] = 0.7
    with pytest.raises(RecordError, match="certified_l2.certified_acc.1.0") as info:
        validate_record(record, "r.json")
    assert "Lipschitz bound or the attack is wrong" in str(info.value)
    record["certified_l2"]["pgd_l2_acc"] = {"0.5": 0.8}
    with pytest.raises(RecordError, match="keyed by the radii"):
        validate_record(record, "r.json")
