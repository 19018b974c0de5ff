"""The local executor: runs independent jobs of the grid in worker processes.

On the CPU every job runs single-threaded, whatever the number of workers: float reductions
depend on the thread count, so fixing it keeps a record the same whether it was produced alone
or beside others. Parallelism comes from processes instead (one per core by default), which on a
small CPU also beats threads for these small models (two one-thread jobs finish in about 70% of
the time two two-thread jobs take one after the other). On a GPU, jobs run one at a time.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

import torch

from benchmark.core.errors import AtbenchError
from benchmark.core.plugins import load_defense_files

#: torch threads of one CPU job (fixed, so results do not depend on how many jobs run at once).
CPU_THREADS_PER_JOB = 1
#: prctl(2) option: the signal the kernel sends this process when its parent dies.
PR_SET_PDEATHSIG = 1


def worker_count(requested: int | None, device: str, jobs: int) -> int:
    """How many worker processes to use: `requested` if given, else one per CPU core (at most
    one per job) on the CPU and one on a GPU."""
    if requested is not None:
        if requested < 1:
            raise AtbenchError(f"--jobs must be at least 1, not {requested}", "pass --jobs 1 or more")
        return min(requested, max(1, jobs))
    if torch.device(device).type != "cpu":
        return 1
    return max(1, min(jobs, os.cpu_count() or 1))


def configure_process(device: str, log_level: int, defense_files: Sequence[str] = ()) -> None:
    """Set up a process that runs jobs: fixed CPU threads, log lines as the CLI prints them, and
    the defenses of the user's `--defense-file`s registered."""
    if torch.device(device).type == "cpu":
        torch.set_num_threads(CPU_THREADS_PER_JOB)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=log_level, format="atbench: %(message)s")
    logging.getLogger().setLevel(log_level)
    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    load_defense_files(defense_files)


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this worker when the process that started it dies (Linux), so a
    `kill -9` of `atbench run` leaves no worker behind writing into the runs folder after the
    folder's lock is free again."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the kernel was told
        os._exit(1)


def _start_worker(parent_pid: int, device: str, log_level: int, defense_files: Sequence[str]) -> None:
    die_with_parent(parent_pid)
    configure_process(device, log_level, defense_files)


def run_local(fn: Callable[..., Any], jobs: Sequence[tuple], workers: int, device: str,
              defense_files: Sequence[str] = ()) -> list[Any]:
    """`[fn(*args) for args in jobs]`, in `workers` processes when more than one (started in
    order, so put the longest jobs first); every process imports `defense_files` first. The
    first error raised by a job is re-raised here after the jobs already running have finished;
    their finished outputs stay on disk. Workers die with this process (`die_with_parent`)."""
    level = logging.getLogger().getEffectiveLevel()
    files = tuple(str(f) for f in defense_files)
    if workers <= 1:
        threads = torch.get_num_threads()
        configure_process(device, level, files)
        try:
            return [fn(*args) for args in jobs]
        finally:
            torch.set_num_threads(threads)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(os.getpid(), device, level, files)) as pool:
        futures = [pool.submit(fn, *args) for args in jobs]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
