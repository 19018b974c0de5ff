"""Publishing a record: a reproduction (the same result, other timings) leaves the published bytes
as they are; another result from the same source replaces them; another source needs --replace."""
import json
import types

import pytest

from benchmark.core.errors import AtbenchError
from benchmark.pipeline.runner import publish, result_of
from tests.fixtures_records import write_consistent

pytestmark = pytest.mark.unit


def _job(records_dir, replace=False):
    return types.SimpleNamespace(paths=types.SimpleNamespace(records_dir=str(records_dir)),
                                 protocol=types.SimpleNamespace(id="mnist5k-cnn", version=2),
                                 record_name="pgd-at-seed0", defense="pgd-at", seed=0,
                                 options=types.SimpleNamespace(replace=replace))


def _rewrite(path, change):
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record, sort_keys=True, indent=2))


def test_a_reproduction_keeps_the_published_bytes_and_another_result_replaces_them(tmp_path):
    first = write_consistent(tmp_path / "run1", robust=0.7)
    published = publish(first, _job(tmp_path / "records"))
    before = published.read_bytes()
    again = write_consistent(tmp_path / "run2", robust=0.7)
    _rewrite(again, lambda r: (r["runtime_s"].update(train=999.0), r["provenance"].update(utc_time="2030-01-01T00:00:00Z")))
    assert result_of(json.loads(again.read_text())) == result_of(json.loads(before))
    assert publish(again, _job(tmp_path / "records")).read_bytes() == before
    other = write_consistent(tmp_path / "run3", robust=0.6)  # same checkpoint and config, another result
    assert publish(other, _job(tmp_path / "records")).read_bytes() == other.read_bytes() != before


def test_another_source_is_refused_without_replace(tmp_path):
    publish(write_consistent(tmp_path / "run1", robust=0.7), _job(tmp_path / "records"))
    other = write_consistent(tmp_path / "run2", robust=0.7)
    _rewrite(other, lambda r: r["provenance"].update(checkpoint_sha256="f" * 64))
    with pytest.raises(AtbenchError, match="already holds pgd-at seed 0"):
        publish(other, _job(tmp_path / "records"))
    assert publish(other, _job(tmp_path / "records", replace=True)).read_bytes() == other.read_bytes()
