"""Shared test set-up: one torch thread (tiny models run >10x faster than with two busy
threads on a 2-core machine) and helpers for tiny runs."""
from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test inside an empty temporary directory (runs/ and leaderboard/ go there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def in_tree_defenses_only(monkeypatch):
    """The test starts from (and leaves) the defense registry with atbench's own defenses
    only: defense files and entry points it loads are forgotten afterwards."""
    from benchmark.core import plugins
    from benchmark.core.registry import DEFENSES

    DEFENSES.names()
    monkeypatch.setattr(DEFENSES, "_entries", dict(DEFENSES._entries))
    monkeypatch.setattr(plugins, "_LOADED", {})


@pytest.fixture
def server():
    """A `tests.fake_server.FakeServer` on 127.0.0.1, shut down after the test."""
    import threading

    from tests.fake_server import FakeServer

    srv = FakeServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
