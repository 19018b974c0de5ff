"""The Ray executor: the same records and run directories as the local executor, user errors
from tasks reaching the caller as themselves, and the CLI's checks of --executor/--address."""
import dataclasses
import json
import logging
import sys

import pytest

from benchmark.commands.cli import main
from benchmark.core.errors import AtbenchError
from benchmark.pipeline.executor_ray import connect, run_ray
from benchmark.pipeline.runner import Executor, execute
from benchmark.pipeline.steps import eval_job, train_job
from tests.shared_run import DEFENSES, shared_tiny_run

pytestmark = pytest.mark.system
#: Provenance that differs between two runs of the same job: when, how long and what it cost.
TIME_FIELDS = ("runtime_s", "cost", "provenance.utc_time")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module (a start takes about 4 s on a 2-core machine),
    which `run_ray` uses as it is. The object store is set small (200 MB) rather than 30% of
    the RAM: tasks return a few hundred bytes, and a small store also fits a CI container's
    /dev/shm. Ray's temp folder stays /tmp/ray (a deep pytest tmp path would make its
    socket paths longer than a Unix socket allows)."""
    import ray

    ray.init(address="local", num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False,
             logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


def without_time_fields(record: dict) -> dict:
    """`record` without the fields in TIME_FIELDS."""
    for field in TIME_FIELDS:
        *parents, leaf = field.split(".")
        block = record
        for key in parents:
            block = block[key]
        del block[leaf]
    return record


def tiny_jobs(defenses, root, device: str = "cpu", defense: str | None = None):
    """Jobs of `defenses` on synthetic-tiny writing under `root` (`defense` replaces each job's
    defense name afterwards, e.g. by an unregistered one)."""
    from benchmark.core.registry import TRACKS
    from benchmark.pipeline.job import Options, Paths, plan
    from benchmark.pipeline.protocol import protocol_for

    track = TRACKS.get("synthetic-tiny")
    paths = Paths(str(root / "runs"), str(root / "records"), str(root / "boards"))
    jobs = plan(track, protocol_for(track), defenses, (0,), device, paths, Options(progress=False))
    return [dataclasses.replace(j, defense=defense) for j in jobs] if defense else jobs


def files_under(folder) -> list[str]:
    """The files under `folder`, as sorted relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_ray_run_writes_the_local_runs_records_and_run_directories(local_ray, tmp_path, tmp_path_factory):
    """The Ray run of DEFENSES against the session's shared local run of them (`tests.shared_run`;
    asked for after the Ray run, which overlaps its training when another worker trains it)."""
    execute(tiny_jobs(DEFENSES, tmp_path / "ray"), "train+eval", Executor("ray"))
    roots = {"local": shared_tiny_run(tmp_path_factory)[0], "ray": tmp_path / "ray"}
    local, ray = (roots[e] / "records" / "synthetic-tiny" for e in ("local", "ray"))
    assert files_under(local) == files_under(ray) == sorted(
        f"{d}-seed0.{suffix}" for d in DEFENSES for suffix in ("json", "flags.npz"))
    for name in DEFENSES:
        a, b = (without_time_fields(json.loads((folder / f"{name}-seed0.json").read_text())) for folder in (local, ray))
        assert a == b
        assert (local / f"{name}-seed0.flags.npz").read_bytes() == (ray / f"{name}-seed0.flags.npz").read_bytes()
    assert files_under(roots["local"] / "runs") == files_under(roots["ray"] / "runs")
    # The boards print each run's cost (its seconds and memory differ between two runs): the same
    # files, the same JSON board but for the cost, and the same plots that show no cost.
    boards = [root / "boards" for root in roots.values()]
    assert files_under(boards[0]) == files_under(boards[1]) and files_under(boards[0])
    a, b = (without_cost(json.loads((folder / "synthetic-tiny.json").read_text())) for folder in boards)
    assert a == b
    for plot in ("synthetic-tiny.png", "synthetic-tiny.classwise.png", "synthetic-tiny.significance.png"):
        assert (boards[0] / plot).read_bytes() == (boards[1] / plot).read_bytes(), plot


def without_cost(board: dict) -> dict:
    """A JSON board without what two runs of the same jobs differ in: each entry's cost, the cost
    comparison, and the view that prints them."""
    out = {k: v for k, v in board.items() if k not in ("cost_comparison", "view")}
    out["entries"] = [{k: v for k, v in e.items() if k != "cost"} for e in board["entries"]]
    return out


def test_a_user_error_in_a_task_reaches_the_caller_as_itself(local_ray, tmp_path):
    with pytest.raises(AtbenchError, match="unknown defense 'no-such-defense'") as caught:
        run_ray(tiny_jobs(["standard"], tmp_path, defense="no-such-defense"), train_job, eval_job, None)
    assert type(caught.value) is AtbenchError and caught.value.fix.startswith("known defenses:")
    assert local_ray.is_initialized()  # an instance run_ray did not start is left running


def test_a_picked_gpu_and_an_unreachable_cluster_are_user_errors(tmp_path):
    class Unreachable:
        """A stand-in for the ray module when no cluster answers."""

        def is_initialized(self):
            return False

        def init(self, **options):
            raise ConnectionError("Could not find any running Ray instance.")

    with pytest.raises(AtbenchError, match="device 'cuda:1' cannot be used with the ray executor"):
        run_ray(tiny_jobs(["standard"], tmp_path, device="cuda:1"), train_job, eval_job, None)
    with pytest.raises(AtbenchError, match="cannot connect to a Ray cluster at auto: Could not find"):
        connect(Unreachable(), "auto")


@pytest.mark.parametrize("argv, message", [
    (["--address", "auto"], "--address auto needs the ray executor"),
    (["--executor", "ray", "--jobs", "2"], "--jobs sets the local executor's worker processes"),
])
def test_options_that_do_not_fit_the_executor_are_user_errors(argv, message, tmp_path, capsys):
    code = main(["run", "--track", "synthetic-tiny", "--defense", "standard", "-q",
                 "--runs-dir", str(tmp_path / "runs"), *argv])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_an_unknown_executor_is_a_user_error(capsys):
    assert main(["run", "--track", "synthetic-tiny", "--executor", "dask"]) == 2
    assert "invalid choice: 'dask'" in capsys.readouterr().err
    with pytest.raises(AtbenchError, match="unknown executor 'dask'"):
        Executor("dask")


def test_the_ray_executor_without_ray_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails
    code = main(["run", "--track", "synthetic-tiny", "--defense", "standard", "-q", "--executor", "ray",
                 "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    assert "the ray executor needs the ray package, which is not installed" in err
    assert "pip install 'atbench[ray]'" in err
