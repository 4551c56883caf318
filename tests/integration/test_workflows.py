"""Workflows on a real Redis and a real worker: chain, group, chord, nesting, batch, failure, cancel."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable

import dramatiq
import pytest
from brokers import on_both_brokers
from click.testing import CliRunner
from conftest import ROOT, WorkerProcess, import_fixture_modules

from aury_tasks import (
    SerializationError,
    TaskCancelled,
    TaskChain,
    TaskFailed,
    TaskManager,
    TaskStatus,
    batch,
    chain,
    chord,
    group,
)
from aury_tasks.cli.main import main
from aury_tasks.core import keys
from aury_tasks.workflows.state import WorkflowState

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
def worker(start_worker: Callable[..., WorkerProcess], queue: Callable[[str], str]) -> WorkerProcess:
    return start_worker("-q", queue("flows"), "-p", "1", "-c", "8", modules=MODULES)


@on_both_brokers
def test_chain_passes_each_result_on(flows, worker, events: EventLog) -> None:
    # (1 + 2) * 10, then + 5: each step gets the previous result as its last argument.
    handle = chain(flows.add.s(1, 2), flows.mul.s(10), flows.add.s(5)).send()
    assert handle.get_result(timeout=30) == 35
    assert [e["args"] for e in events.all()] == [[1, 2], [10, 3], [5, 30]]
    tree = handle.tree()
    assert tree.status == "success"
    assert [child.status for child in tree.root.children] == ["success"] * 3


@on_both_brokers
def test_group_returns_results_in_order(flows, worker) -> None:
    handle = group(flows.mul.s(i, i) for i in range(20)).send()
    assert handle.get_results(timeout=30) == [i * i for i in range(20)]
    assert handle.progress() == (20, 20)
    assert handle.completed() == 20


@on_both_brokers
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


@on_both_brokers
def test_failing_step_stops_the_chain(flows, worker, events: EventLog) -> None:
    handle = chain(flows.add.s(1, 1), flows.broken.si("x"), flows.add.s(1), flows.mul.s(2)).send()
    with pytest.raises(TaskFailed) as failed:
        handle.get_result(timeout=30)
    assert failed.value.error_type == "PermanentError"
    statuses = [child.status for child in handle.tree().root.children]
    assert statuses == ["success", "failure", "cancelled", "cancelled"]
    assert events.all("mul") == []


@on_both_brokers
def test_chord_fails_with_a_members_error_and_runs_no_callback(flows, worker, events: EventLog) -> None:
    handle = chord([flows.add.s(1, 1), flows.broken.si("m"), flows.add.s(2, 2)], flows.total.s()).send()
    with pytest.raises(TaskFailed) as failed:
        handle.get_result(timeout=30)
    assert "broken m" in failed.value.error_message
    wait_until(lambda: len(events.all("add")) == 2, timeout=10, what="the other members")
    assert events.all("total") == []


def test_group_inside_a_chain_hands_the_list_on(flows, worker) -> None:
    handle = chain(flows.add.s(1, 1), group(flows.mul.s(10), flows.mul.s(100)), flows.total.s()).send()
    # add -> 2; the group gets 2 in each member: [20, 200]; total -> 220
    assert handle.get_result(timeout=30) == 220


@on_both_brokers
def test_a_retried_step_carries_on_after_its_retry(flows, worker, events: EventLog) -> None:
    handle = chain(flows.flaky.si("r1"), flows.collect.s()).send()
    assert handle.get_result(timeout=30) == "r1"
    assert len(events.all("flaky")) == 2
    assert [c.attempt for c in handle.tree().root.children] == [2, 1]


def test_member_failure_include_passes_the_error_on(flows, worker) -> None:
    workflow = chord([flows.add.s(1, 1), flows.broken.si("i")], flows.collect.s(), member_failure="include")
    result = workflow.send().get_result(timeout=30)
    assert result[0] == 2
    assert result[1]["error"]["type"] == "PermanentError"
    assert result[1]["error"]["status"] == "failure"


def test_batch_fans_out_in_chunks_with_aggregated_progress(flows, worker) -> None:
    handle = batch(flows.import_rows, list(range(40)), chunk_size=10, kwargs={"pause": 0.1}).send()
    assert handle.kind == "group"
    seen = set()
    while handle.status() is TaskStatus.PENDING:
        seen.add(round(handle.percent()))
        time.sleep(0.05)
    assert handle.get_results(timeout=30) == [10, 10, 10, 10]
    assert handle.percent() == 100.0
    # Reports of the running chunks counted on the way (each chunk takes 1 s, reporting every 0.1 s)
    assert any(0 < percent < 100 for percent in seen), seen


def test_task_chain_execute(flows, worker, events: EventLog) -> None:
    # Each step runs with exactly the arguments given to add()
    chained = TaskChain().add(flows.add, 1, 2).add(flows.mul, 3, 4)
    assert asyncio.run(chained.execute(timeout=30)) == 12
    assert [e["kind"] for e in events.all()] == ["add", "mul"]


@on_both_brokers
def test_cancel_a_workflow(flows, worker, events: EventLog) -> None:
    # Given a chain whose first step runs for a while, with a group after it
    handle = chain(flows.slow.s(20, 1), flows.add.s(1), group(flows.mul.s(2), flows.mul.s(3))).send()
    events.wait_for(1, "slow_start")

    # When it is cancelled
    assert handle.cancel() is True

    # Then the running step is interrupted, nothing after it runs, and every step is cancelled
    with pytest.raises(TaskCancelled):
        handle.get_result(timeout=10)
    tree = handle.tree()
    statuses = [task.status for task in tree.root.children[:2]] + [
        m.status for m in tree.root.children[2].children
    ]
    wait_until(lambda: handle.tree().root.children[0].status == "cancelled", timeout=10, what="interrupt")
    assert statuses[1:] == ["cancelled"] * 3
    assert events.all("slow") == [] and events.all("add") == [] and events.all("mul") == []
    assert handle.cancel() is False  # it has ended


@on_both_brokers
def test_a_redelivered_member_does_not_run_the_callback_twice(flows, worker, events: EventLog) -> None:
    # Given a chord that has completed
    handle = chord([flows.add.s(i, i) for i in range(5)], flows.collect.s()).send()
    assert handle.get_result(timeout=30) == [0, 2, 4, 6, 8]
    member = handle.tree().root.children[0].children[4]

    # When a copy of the member that fired the callback is delivered again (as after a worker died
    # between its join and its ack) ...
    record = flows.tm.task_record(member.id)
    flows.tm.broker.enqueue(dramatiq.Message(**record.message))
    wait_until(lambda: len(events.all("add")) == 6, timeout=10, what="the redelivered member")

    # Then it runs, but the callback does not run again
    flows.tm.broker.enqueue(dramatiq.Message(**flows.tm.task_record(member.id).message))
    wait_until(lambda: len(events.all("add")) == 7, timeout=10, what="the second copy")
    time.sleep(0.5)  # the callback, were it started again, would have run by now
    assert len(events.all("collect")) == 1


def test_a_non_json_argument_is_refused_before_anything_is_sent(flows, redis_client) -> None:
    with pytest.raises(SerializationError, match="argument 1"):
        chain(flows.add.s(1, {1, 2}), flows.mul.s(2)).send()
    assert redis_client.llen(f"{keys.DEFAULT.prefix}:flows") == 0


def test_aum_status_shows_the_tree(flows, worker) -> None:
    handle = chain(flows.add.s(1, 2), group(flows.mul.s(2), flows.mul.s(3))).send()
    handle.get_result(timeout=30)
    result = CliRunner().invoke(main, ["status", handle.id])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("status") and "success" in line for line in lines)
    tree = [line for line in lines if line.startswith(("├", "└", "│", " "))]
    assert len(tree) == 4  # add, the group, its two members
    assert "group (2)" in tree[1] and "2/2 success" in tree[1]
    assert tree[2].startswith("   ├─ ") and "success" in tree[2]
    as_json = json.loads(CliRunner().invoke(main, ["status", handle.id, "--json"]).output)
    assert as_json["workflow"]["root"]["children"][1]["kind"] == "group"


def test_chord_members_redelivered_after_a_worker_kill_fire_the_callback_once(
    flows, start_worker: Callable[..., WorkerProcess], events: EventLog
) -> None:
    # Given a chord with three quick members and three slow ones, on a worker that is then killed
    # (worker and worker processes at once) while the slow ones run
    fast_heartbeat = {"TASK_HEARTBEAT_TIMEOUT": "2"}
    first = start_worker("-q", "flows", "-c", "8", modules=MODULES, env=fast_heartbeat)
    members = [flows.add.s(i, 0) for i in range(3)] + [flows.slow.s(2, 10 + i) for i in range(3)]
    handle = chord(members, flows.collect.s()).send()
    events.wait_for(3, "slow_start")
    first.signal_group(signal.SIGKILL)
    first.wait()
    assert events.all("slow") == []

    # When another worker starts
    start_worker("-q", "flows", "-c", "8", modules=MODULES, env=fast_heartbeat)

    # Then the slow members run again there, and the callback runs once with every result
    assert handle.get_result(timeout=60) == [0, 1, 2, 10, 11, 12]
    assert len(events.all("slow_start")) == 6
    time.sleep(0.5)  # a second callback, were one started, would have run by now
    assert len(events.all("collect")) == 1
    assert handle.tree().root.children[1].status == "success"


def test_a_fired_group_whose_worker_died_is_taken_over(
    flows, start_worker: Callable[..., WorkerProcess], events: EventLog, redis_client
) -> None:
    # Given a chord whose members all joined, as if by a worker that then died before it started
    # the callback (the joins rode on the members' acks; the callback is still owed)
    handle = chord([flows.add.s(i, 0) for i in range(3)], flows.collect.s()).send()
    flows.tm.broker.flush("flows")
    group_id = handle.tree().root.children[0].id
    state = WorkflowState(flows.tm.store.client, flows.tm.store.keys, flows.tm.store.ttl_ms)
    members = [child.id for child in handle.tree().root.children[0].children]
    outcomes = [state.join(group_id, i, member, value=i) for i, member in enumerate(members)]
    assert [outcome.action for outcome in outcomes] == ["wait", "wait", "fire"]
    assert redis_client.zscore(keys.DEFAULT.workflow_owed(), group_id) is not None

    # When a worker runs, once the debt is older than the heartbeat timeout
    start_worker("-q", "flows", modules=MODULES, env={"TASK_HEARTBEAT_TIMEOUT": "2"})

    # Then it starts the callback, once, with the members' results
    assert handle.get_result(timeout=30) == [0, 1, 2]
    assert len(events.all("collect")) == 1
    wait_until(
        lambda: redis_client.zscore(keys.DEFAULT.workflow_owed(), group_id) is None, timeout=5, what="settled"
    )
