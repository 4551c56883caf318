"""Fixtures of the many-hosts suite: the namespace rig, its processes, the producer, the figures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import import_fixture_modules

from aury_tasks import TaskManager
from aury_tasks.config.settings import get_settings

from .cluster import MODULES, Cluster
from .evidence import Figures
from .rig import Rig, namespaces_unavailable

_unavailable: list[str | None] = []


def _why_not() -> str | None:
    if not _unavailable:
        reason = "needs root to create network namespaces" if os.geteuid() != 0 else None
        _unavailable.append(reason or namespaces_unavailable())
    return _unavailable[0]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A rig with its Redis host and producer host; every namespace deleted after the test."""
    reason = _why_not()
    if reason:
        pytest.skip(f"the many-hosts rig cannot run here: {reason}")
    rig = Rig(tmp_path / "hosts")
    made = Cluster(rig)
    try:
        made.start_redis()
        yield made
    finally:
        made.stop()
        rig.close()


@pytest.fixture
def producer(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[TaskManager]:
    """The default TaskManager on the rig's Redis; the test runs on the producer host meanwhile."""
    monkeypatch.setenv("TASK_BROKER_URL", cluster.url)
    get_settings.cache_clear()
    with cluster.on_producer():
        tm = TaskManager.get_instance()
        import_fixture_modules(MODULES)
        yield tm
        TaskManager.reset_instance()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test, so ``figures`` knows whether the scenario passed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """This scenario's figures (label from ``@pytest.mark.scenario``), reported after the test."""
    marker = request.node.get_closest_marker("scenario")
    row = Figures(scenario=marker.args[0] if marker else request.node.name)
    yield row
    call = getattr(request.node, "report_call", None)
    row.outcome = call.outcome if call is not None else "error"
    row.write()
