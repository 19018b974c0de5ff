"""The local executor: worker counts, errors from workers, and records that do not depend on
how many workers produced them."""
import json

import numpy as np
import pytest

from benchmark.core.errors import AtbenchError
from benchmark.pipeline.executor import run_local, worker_count
from tests.helpers import run_track
from tests.shared_run import DEFENSES, TRACK, shared_tiny_run


@pytest.mark.unit
def test_worker_count_rules(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert worker_count(None, "cpu", 9) == 4
    assert worker_count(None, "cpu", 2) == 2
    assert worker_count(None, "cuda", 9) == 1
    assert worker_count(3, "cpu", 9) == 3 and worker_count(8, "cpu", 2) == 2
    with pytest.raises(AtbenchError, match="--jobs must be at least 1"):
        worker_count(0, "cpu", 9)


def fails_for(value):
    """A job that raises a user error for one input."""
    if value == 2:
        raise AtbenchError("job 2 failed", "fix job 2")
    return value * 10


@pytest.mark.system
def test_results_come_back_in_order_and_errors_reach_the_caller():
    assert run_local(fails_for, [(1,), (3,), (4,)], 2, "cpu") == [10, 30, 40]
    with pytest.raises(AtbenchError, match="job 2 failed"):
        run_local(fails_for, [(1,), (2,), (3,)], 2, "cpu")


@pytest.mark.system
def test_records_do_not_depend_on_the_number_of_workers(tmp_path, tmp_path_factory):
    """Two jobs in two worker processes give the records of the session's shared run, made by one."""
    root = tmp_path / "jobs2"
    run_track(TRACK, DEFENSES, (0,), runs_dir=root / "runs", records_dir=root / "records", boards_dir=root / "boards",
              jobs=2)
    outputs = {1: shared_tiny_run(tmp_path_factory)[0] / "records" / TRACK, 2: root / "records" / TRACK}
    for name in (f"{defense}-seed0" for defense in DEFENSES):
        a, b = (json.loads((outputs[j] / f"{name}.json").read_text()) for j in (1, 2))
        assert a["robust_acc"] == b["robust_acc"] and a["clean_acc"] == b["clean_acc"]
        assert a["provenance"]["checkpoint_sha256"] == b["provenance"]["checkpoint_sha256"]
        flags = [np.load(outputs[j] / f"{name}.flags.npz") for j in (1, 2)]
        assert all(np.array_equal(flags[0][k], flags[1][k]) for k in flags[0].files)


@pytest.mark.unit
def test_every_user_error_survives_pickling():
    import pickle

    from leaderboard.record import RecordError

    for error in (AtbenchError("p", "f"), RecordError("a.json", "x.y", "must be a number")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error) and copy.__dict__ == error.__dict__
