"""Connecting to a Ray cluster is bounded (`benchmark.pipeline.executor_ray.probe`): an address
where nobody listens used to keep `atbench run --executor ray` retrying forever."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.core.errors import AtbenchError
from benchmark.pipeline.executor_ray import CONNECT_TIMEOUT_S, connect

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[1]


class RecordingRay:
    """A stand-in for the ray module that records whether `init` was called."""

    def __init__(self):
        self.inits = []

    def is_initialized(self):
        return False

    def init(self, **options):
        self.inits.append(options)


def test_run_against_an_address_nobody_listens_on_returns_at_once(tmp_path):
    """Breaks if `atbench run --executor ray --address 127.0.0.1:1` (nobody listens) does not end
    within the connect timeout with exit 2 naming the address and the fix, or leaves a process
    or a Ray session folder behind."""
    ray_tmp = tmp_path / "ray-tmp"
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "run", "--executor", "ray", "--address", "127.0.0.1:1",
                             "--track", "synthetic-tiny", "--defense", "standard", "-q",
                             "--runs-dir", str(tmp_path / "runs"), "--records-dir", str(tmp_path / "records"),
                             "--boards-dir", str(tmp_path / "boards")],
                            cwd=REPO, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=60 + CONNECT_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    elapsed = time.monotonic() - started
    print(f"atbench run --address 127.0.0.1:1 returned after {elapsed:.2f} s")
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert "cannot connect to a Ray cluster at 127.0.0.1:1" in err and "  fix: " in err and "ray start" in err
    with pytest.raises(ProcessLookupError):  # nothing of its process group is left running
        os.killpg(proc.pid, 0)
    assert not ray_tmp.exists() or not any(ray_tmp.rglob("session_*"))
    assert not (tmp_path / "records").exists() and not (tmp_path / "boards").exists()


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:99999", "127.0.0.1:0", "ray://", "host:port"])
def test_a_malformed_address_is_refused_before_ray_starts(address):
    """Breaks if an address without a port in 1..65535 reaches `ray.init`."""
    ray = RecordingRay()
    with pytest.raises(AtbenchError, match="is not a Ray address"):
        connect(ray, address)
    assert ray.inits == []


def _server(answer: bytes | None):
    """A TCP server on 127.0.0.1 that reads the client's first bytes and answers `answer` (None:
    stays silent); its address and its thread."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            if answer is not None:
                conn.sendall(answer)
            time.sleep(CONNECT_TIMEOUT_S + 1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, f"127.0.0.1:{server.getsockname()[1]}"


def test_a_grpc_server_is_passed_to_ray():
    """Breaks if the probe refuses an address that answers as a gRPC (HTTP/2) server does (the
    refusals below would then pass for any address)."""
    settings_frame = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    server, address = _server(settings_frame)
    with server:
        ray = RecordingRay()
        assert connect(ray, address) is True
    assert ray.inits == [{"address": address, "logging_level": 40}]


@pytest.mark.parametrize("answer", [b"HTTP/1.1 400 Bad Request\r\n\r\n", None], ids=["http1", "silent"])
def test_a_port_that_speaks_another_protocol_is_refused_within_the_timeout(answer):
    """Ray would wait for a cluster there without end (measured past 80 s)."""
    server, address = _server(answer)
    with server:
        ray = RecordingRay()
        start = time.monotonic()
        with pytest.raises(AtbenchError, match="does not answer as a Ray cluster"):
            connect(ray, address)
        assert time.monotonic() - start <= CONNECT_TIMEOUT_S + 1
    assert ray.inits == []


def test_a_real_ray_cluster_passes_the_probe():
    """Breaks if the gRPC check refuses a real Ray cluster's GCS address."""
    import ray

    from benchmark.pipeline.executor_ray import probe

    ray.init(num_cpus=1, include_dashboard=False, logging_level=40)
    try:
        probe(ray, ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()
