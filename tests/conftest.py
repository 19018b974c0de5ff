"""Shared test set-up: one torch thread (tiny models run >10x faster than with two busy
threads on a 2-core machine), helpers for tiny runs, and the test tiers: every test carries
exactly one tier marker (TIERS; described in pyproject.toml), a module without one fails to
collect, and the run ends with the time each tier took."""
from __future__ import annotations

from collections import defaultdict

import pytest
import torch

torch.set_num_threads(1)

#: The tier markers; every test has exactly one.
TIERS = ("unit", "golden", "system", "benchmark", "slow", "gpu")
#: Seconds (set-up + call + tear-down) and tests per tier, summed from the reports of this run.
_TIER_SECONDS: dict[str, float] = defaultdict(float)
_TIER_TESTS: dict[str, set[str]] = defaultdict(set)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """A module (or class) whose tests do not each carry exactly one tier marker fails to
    collect, naming each such test and the fix. (Checked here rather than in
    pytest_collection_modifyitems: a collection error reaches the terminal from xdist workers
    too, and it comes before `-m` deselects anything.) Each test's tier goes into its user
    properties, which its reports carry to `pytest_runtest_logreport`."""
    report = yield
    wrong = []
    for item in report.result or []:
        if isinstance(item, pytest.Item):
            tiers = sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS})
            if len(tiers) == 1:
                item.user_properties.append(("tier", tiers[0]))
            else:
                wrong.append(f"{item.nodeid}: {' and '.join(tiers) if tiers else 'no tier marker'}")
    if wrong and report.passed:
        report.outcome, report.result = "failed", []
        report.longrepr = (f"every test needs exactly one tier marker of {', '.join(TIERS)}; these do not:\n  "
                           + "\n  ".join(wrong) + "\nfix: put `pytestmark = pytest.mark.<tier>` below the module's "
                           "imports, or mark each test with `@pytest.mark.<tier>` where a module mixes tiers "
                           "(the tiers: pyproject.toml, [tool.pytest.ini_options] markers)")
    return report


def pytest_collection_modifyitems(items):
    """Modules with a system test first, each kept whole and in order: `--dist loadfile` hands
    modules to the workers in this order, so the long ones start early and short ones fill the end."""
    def module(item):
        return item.nodeid.split("::")[0]

    heavy = {module(item) for item in items if ("tier", "system") in item.user_properties}
    items.sort(key=lambda item: module(item) not in heavy)


def pytest_runtest_logreport(report):
    """Add each phase's duration to its test's tier (with xdist, on the controlling process too)."""
    tier = dict(report.user_properties).get("tier")
    if tier:
        _TIER_SECONDS[tier] += report.duration
        _TIER_TESTS[tier].add(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    """The time each tier took: its tests' set-up, call and tear-down seconds, summed (with
    `-n 2` the tiers share two workers, so the run's wall time is about half the total)."""
    if not _TIER_SECONDS:
        return
    terminalreporter.write_sep("=", "time per tier (seconds of set-up, call and tear-down, summed)")
    for tier in sorted(_TIER_SECONDS, key=TIERS.index):
        terminalreporter.write_line(f"{tier:<10} {len(_TIER_TESTS[tier]):>5} tests {_TIER_SECONDS[tier]:>8.1f} s")
    terminalreporter.write_line(f"{'all':<10} {sum(map(len, _TIER_TESTS.values())):>5} tests "
                                f"{sum(_TIER_SECONDS.values()):>8.1f} s")


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


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    """The bench cases' tiny trained workload (`tests.helpers.bench_workload`), once per module."""
    from tests.helpers import bench_workload

    return bench_workload(tmp_path_factory.mktemp("protocol"))


@pytest.fixture(scope="module")
def ten_class_workload():
    """The bench cases' ten-class workload (`tests.helpers.ten_class_bench_workload`), once per module."""
    from tests.helpers import ten_class_bench_workload

    return ten_class_bench_workload()
