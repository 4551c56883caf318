"""Workflows on a real Redis and a real worker: chain, group, chord, nesting, batch, failure, cancel."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import ROOT, WorkerProcess, import_fixture_modules

from aury_tasks import TaskFailed, TaskManager, chain, chord, group

from .events import EventLog, wait_until

pytestmark = pytest.mark.timeout(90)

MODULES = ROOT / "tests" / "fixtures" / "workflow_modules"


@pytest.fixture
def flows(producer: TaskManager) -> object:
    """The workflow fixture tasks, imported into the producer."""
    import_fixture_modules(MODULES)
    from workflow_modules.flows import tasks  # type: ignore[import-not-found]

    return tasks


@pytest.fixture
def worker(start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    return start_worker("-q", "flows", "-p", "1", "-c", "8", modules=MODULES)


def test_chain_passes_each_result_on(flows, worker, events: EventLog) -> None:
    # (1 + 2) * 10, then + 5: each step gets the previous result as its last argument.
    handle = chain(flows.add.s(1, 2), flows.mul.s(10), flows.add.s(5)).send()
    assert handle.get_result(timeout=30) == 35
    assert [e["args"] for e in events.all()] == [[1, 2], [10, 3], [5, 30]]
    tree = handle.tree()
    assert tree.status == "success"
    assert [child.status for child in tree.root.children] == ["success"] * 3


def test_group_returns_results_in_order(flows, worker) -> None:
    handle = group(flows.mul.s(i, i) for i in range(20)).send()
    assert handle.get_results(timeout=30) == [i * i for i in range(20)]
    assert handle.progress() == (20, 20)
    assert handle.completed() == 20


def test_chord_callback_gets_every_result(flows, worker, events: EventLog) -> None:
    handle = chord([flows.add.s(i, 1) for i in range(10)], flows.total.s()).send()
    assert handle.get_result(timeout=30) == sum(range(1, 11))
    assert len(events.all("total")) == 1


def test_four_stage_workflow(flows, worker) -> None:
    # fetch in parallel -> merge -> process in parallel (each gets the merge) -> summarize
    workflow = chain(
        group(flows.fetch.s(source) for source in ("a", "b", "c")),
        flows.merge.s(),
        group(flows.process.s("type1"), flows.process.s("type2")),
        flows.summarize.s(),
    )
    handle = workflow.send()
    try:
        result = handle.get_result(timeout=10)
    except TimeoutError:
        print("\n".join(handle.tree().render()))
        print(worker.output())
        raise
    assert result == {"count": 2, "results": ["type1:A+B+C", "type2:A+B+C"]}


def test_chain_inside_group(flows, worker) -> None:
    handle = group(chain(flows.add.s(1, 1), flows.mul.s(3)), flows.add.s(10, 10)).send()
    assert handle.get_results(timeout=30) == [6, 20]


def test_failing_step_stops_the_chain(flows, worker, events: EventLog) -> None:
    handle = chain(flows.add.s(1, 1), flows.broken.si("x"), flows.add.s(1), flows.mul.s(2)).send()
    with pytest.raises(TaskFailed) as failed:
        handle.get_result(timeout=30)
    assert failed.value.error_type == "PermanentError"
    statuses = [child.status for child in handle.tree().root.children]
    assert statuses == ["success", "failure", "cancelled", "cancelled"]
    assert events.all("mul") == []


def test_chord_fails_with_a_members_error_and_runs_no_callback(flows, worker, events: EventLog) -> None:
    handle = chord([flows.add.s(1, 1), flows.broken.si("m"), flows.add.s(2, 2)], flows.total.s()).send()
    with pytest.raises(TaskFailed) as failed:
        handle.get_result(timeout=30)
    assert "broken m" in failed.value.error_message
    wait_until(lambda: len(events.all("add")) == 2, timeout=10, what="the other members")
    assert events.all("total") == []
