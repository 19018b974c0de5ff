"""The Ray executor: the job grid as Ray tasks, on a local Ray instance or on a Ray cluster.

Each job is one training task and one evaluation task that takes the training task's result as
an argument, so Ray starts it only once that training has finished; the caller passes the two
job functions (`benchmark.pipeline.steps.train_job`, `eval_job`), so this module imports no
runner. A task sets up its worker process as the local executor's
workers are (`configure_process`: one torch thread on the CPU, so the records are bit-identical
to a local run; the CLI's log lines; the user's defense files imported) and writes its outputs
into the same run directories. Paths are resolved on the driver (a job carries its loaded
protocol): the runs folder, the data folder and the defense files must be visible at the same
path on every node (a shared file system on a cluster).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmark.core.errors import AtbenchError
from benchmark.pipeline.data import default_data_dir
from benchmark.pipeline.executor import configure_process
from benchmark.pipeline.job import Job

#: Devices a task can run on: Ray hands each CUDA task a GPU of its own (seen as `cuda`).
RAY_DEVICES = ("cpu", "cuda")
#: Seconds a cluster's address has to accept a TCP connection before `connect` gives up (Ray
#: itself retries an address where nobody listens without end).
CONNECT_TIMEOUT_S = 5.0
_ADDRESS_FIX = ("run `ray start --head` on the cluster's head node and pass --address auto there (or its host:port), "
                "or leave out --address to start a local Ray instance")


def run_ray(jobs: Sequence[Job], train_fn: Callable[[Job], Any], eval_fn: Callable[[Job, Any], Path],
            address: str | None) -> list[Path]:
    """Train and evaluate every job as Ray tasks (each reserving one GPU on `cuda`, one CPU on
    `cpu`): `train_fn(job)`, then `eval_fn(job, its result)`; returns the record paths in the
    order of `jobs`. The jobs' folders must be paths every Ray worker sees (a shared folder on
    a cluster): they are made absolute here.

    Connects to the Ray cluster at `address` (`auto`, `host:port` or `ray://host:port`), or,
    without one, starts a local Ray instance with one CPU slot per core, shut down at the end;
    a Ray already initialised in this process is used as it is and left running.

    Raises:
        AtbenchError: ray is not installed, the device is not `cpu` or `cuda`, the cluster
            cannot be reached (nobody accepting a connection at its address within
            `CONNECT_TIMEOUT_S`), or a task raised one (the other tasks are then cancelled;
            finished outputs stay on disk and a re-run resumes).
    """
    device = jobs[0].device
    if device not in RAY_DEVICES:
        raise AtbenchError(f"device {device!r} cannot be used with the ray executor",
                           "use --device cuda (Ray gives every task a GPU of its own) or --device cpu")
    ray = import_ray()
    connected_here = connect(ray, address)
    try:
        files = tuple(shared_path(f) for f in jobs[0].options.defense_files)
        setup = (device, logging.getLogger().getEffectiveLevel(), files)
        task = ray.remote(**task_resources(device))(run_in_configured_worker)
        trainings, records = [], []
        for job in map(shared_job, jobs):
            job = dataclasses.replace(job, options=dataclasses.replace(job.options, progress=False,
                                                                       defense_files=files))
            trained = task.options(name=f"train {job.defense} seed{job.seed}").remote(setup, train_fn, None, (job,))
            records.append(task.options(name=f"eval {job.defense} seed{job.seed}").remote(
                setup, eval_fn, trained, (job,), True))
            trainings.append(trained)
        return gather(ray, records, trainings + records)
    finally:
        if connected_here:
            ray.shutdown()


def shared_job(job: Job) -> Job:
    """The job with its folders made absolute on the driver, for workers elsewhere."""
    paths = job.paths
    shared = dataclasses.replace(paths, runs_dir=shared_path(paths.runs_dir),
                                 data_dir=shared_path(paths.data_dir or default_data_dir()))
    return dataclasses.replace(job, paths=shared)


def import_ray():
    """The `ray` module, or a user error saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise AtbenchError("the ray executor needs the ray package, which is not installed",
                           "pip install 'atbench[ray]' (or pip install ray), "
                           "or use the default --executor local") from exc
    return ray


def connect(ray, address: str | None) -> bool:
    """Connect this process to the Ray cluster at `address`, or start a local instance sized
    to this machine; returns whether it connected (False when Ray was initialised already).
    The cluster's address must first accept a TCP connection and answer as a gRPC server within
    `CONNECT_TIMEOUT_S` (`probe`), so an address where nobody (or something else) listens fails
    within that time, with nothing of Ray started."""
    if ray.is_initialized():
        return False
    try:
        if address:
            probe(ray, address)
            ray.init(address=address, logging_level=logging.ERROR)
        else:
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.ERROR)
    except (ConnectionError, ValueError) as exc:
        raise AtbenchError(f"cannot connect to a Ray cluster at {address}: {exc}", _ADDRESS_FIX) from exc
    return True


def probe(ray, address: str) -> None:
    """Refuse `address` (`auto`, `host:port`, `ray://host:port`) unless it is well formed and its
    host:port accepts a TCP connection and answers the HTTP/2 preface (gRPC) within
    `CONNECT_TIMEOUT_S`. `auto` is looked up as Ray
    looks it up; when Ray knows no cluster there is nothing to probe (`ray.init` says so at once).

    Raises:
        AtbenchError: a malformed address, or nobody answering there in time.
    """
    host, port = endpoint(ray, address)
    if host is None:
        return
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as conn:
            speaks_grpc = _answers_http2(conn)
    except OSError as exc:
        why = f"no answer within {CONNECT_TIMEOUT_S:g} s" if isinstance(exc, TimeoutError) else str(exc)
        raise AtbenchError(f"cannot connect to a Ray cluster at {address}: nothing accepts a connection at "
                           f"{host}:{port} ({why})", _ADDRESS_FIX) from None
    if not speaks_grpc:
        raise AtbenchError(f"cannot connect to a Ray cluster at {address}: {host}:{port} accepts connections but "
                           f"does not answer as a Ray cluster (gRPC) within {CONNECT_TIMEOUT_S:g} s",
                           _ADDRESS_FIX)


#: The HTTP/2 client preface and an empty SETTINGS frame: what a gRPC client sends first.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _answers_http2(conn: socket.socket) -> bool:
    """Whether the peer answers the HTTP/2 preface with a SETTINGS frame within the connection's
    timeout, as Ray's gRPC servers (GCS, Ray client) do. Ray may wait for a cluster at a port
    that accepts connections but speaks another protocol without end; this is bounded. A TLS
    cluster (`RAY_USE_TLS`) answers the preface with a TLS alert, so it is not probed this way."""
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return True
    try:
        conn.sendall(_HTTP2_HELLO)
        header = b""
        while len(header) < 9:
            chunk = conn.recv(9 - len(header))
            if not chunk:
                return False
            header += chunk
    except OSError:  # a timeout or a reset: no HTTP/2 answer
        return False
    return header[3] == 0x04  # the frame type: SETTINGS


def endpoint(ray, address: str) -> tuple[str | None, int]:
    """The host and port `address` names (`auto`: the cluster Ray recorded on this machine, or
    (None, 0) when it recorded none).

    Raises:
        AtbenchError: the address is not `auto`, `host:port` or `ray://host:port` with a port in
            1..65535.
    """
    target = address
    if address == "auto":
        try:
            target = ray._private.services.canonicalize_bootstrap_address("auto")
        except (AttributeError, ImportError, ValueError, ConnectionError):  # Ray's lookup: its error comes at init
            target = None
        if target is None:
            return None, 0
    host, _, port = target.removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise AtbenchError(f"--address {address} is not a Ray address with a port in 1..65535",
                           "pass auto, HOST:PORT (the cluster's GCS, e.g. 10.0.0.5:6379) or ray://HOST:PORT")
    return host, int(port)


def task_resources(device: str) -> dict[str, int]:
    """What one task reserves: a GPU on cuda, else one CPU (its job is single-threaded)."""
    return {"num_gpus": 1} if device == "cuda" else {"num_cpus": 1}


def shared_path(path: str | Path) -> str:
    """`path` made absolute on the driver, so that every worker finds the same file."""
    return str(Path(path).expanduser().resolve())


def run_in_configured_worker(setup: tuple, fn: Callable[..., Any], after: Any, args: tuple,
                             pass_after: bool = False) -> Any:
    """`fn(*args)` (`fn(*args, after)` with `pass_after`) in a Ray worker set up by
    `configure_process(*setup)`. `after` is the result of the task this one depends on: Ray
    runs this task only once that one has finished."""
    configure_process(*setup)
    return fn(*args, after) if pass_after else fn(*args)


def gather(ray, results: list, tasks: list) -> list:
    """The values of the `results` tasks, in order. On the first task that fails, cancel the
    unfinished `tasks` and re-raise its error (a user error as the AtbenchError it is)."""
    try:
        waiting = list(results)
        while waiting:
            finished, waiting = ray.wait(waiting, num_returns=1)
            ray.get(finished)
        return ray.get(results)
    except ray.exceptions.RayTaskError as exc:
        for task in tasks:
            ray.cancel(task)
        if isinstance(exc.cause, AtbenchError):
            raise exc.cause from exc
        raise
