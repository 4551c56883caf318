"""Workflows without a broker: building the canvas, its JSON tree, and eager mode running it inline."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aury_tasks import (
    Chain,
    Group,
    PermanentError,
    RunMode,
    TaskChain,
    TaskManager,
    TaskOptionError,
    batch,
    chain,
    chord,
    group,
)
from aury_tasks.workflows.engine import NOTHING, Launch
from aury_tasks.workflows.spec import build, tasks


@pytest.fixture
def tm() -> TaskManager:
    manager = TaskManager("workflows-unit")
    manager.configure(run_mode=RunMode.EAGER)
    return manager


@pytest.fixture
def ops(tm: TaskManager) -> Any:
    class Ops:
        @staticmethod
        @tm.conditional_task(queue_name="math")
        def add(x: int, y: int) -> int:
            return x + y

        @staticmethod
        @tm.conditional_task(queue_name="math", priority=4)
        async def mul(x: int, y: int) -> int:
            await asyncio.sleep(0)
            return x * y

        @staticmethod
        @tm.conditional_task
        def total(values: list[int]) -> int:
            return sum(values)

        @staticmethod
        @tm.conditional_task
        def fail(tag: str) -> None:
            raise PermanentError(tag)

    return Ops


def test_signatures_and_their_names(ops: Any) -> None:
    assert repr(ops.add.s(1)) == f"{ops.add.name}.s(1)"
    assert repr(ops.add.si(1, y=2)) == f"{ops.add.name}.si(1, y=2)"
    assert ops.add.si(1, 2).immutable and not ops.add.s(1).immutable
    assert ops.add.s(1).set(queue_name="other", priority=7).queue_name == "other"


def test_chain_group_and_chord_accept_lists_generators_and_the_pipe(ops: Any) -> None:
    assert chain([ops.add.s(1, 1), ops.add.s(2)]) == chain(ops.add.s(1, 1), ops.add.s(2))
    assert isinstance(ops.add.s(1, 1) | ops.add.s(2), Chain)
    assert len(group(ops.add.s(i, i) for i in range(5)).members) == 5
    assert isinstance(chord([ops.add.s(1, 1)], ops.total.s()).header, Group)
    assert chord([ops.add.s(1, 1)])(ops.total.s()).body == ops.total.s()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda ops: chain(), "at least one step"),
        (lambda ops: chain(ops.add, ops.total.s()), r"use task.s\(...\)"),
        (lambda ops: group([ops.add.s(1, 1)], member_failure="ignore"), "member_failure"),
        (lambda ops: batch(ops.total, [1, 2], chunk_size=0), "chunk_size"),
        (lambda ops: build(chord([ops.add.s(1, 1)])), "needs a callback"),
    ],
)
def test_bad_workflows_are_refused_with_one_line(ops: Any, make: Any, message: str) -> None:
    with pytest.raises(TaskOptionError, match=message):
        make(ops)


def test_the_tree_gives_each_task_an_id_and_keeps_priorities(ops: Any) -> None:
    root = build(chain(ops.add.s(1, 1), group(ops.mul.s(2), ops.mul.s(3).set(priority=9)), ops.total.s()))
    found = list(tasks(root))
    assert len(found) == 4
    assert len({task["id"] for task in found}) == 4
    assert [task["prio"] for task in found] == [0, 4, 9, 0]
    assert [task["queue"] for task in found] == ["math", "math", "math", "default"]


def test_a_launch_carries_the_continuation_in_each_message(ops: Any) -> None:
    root = build(chain(ops.add.s(1, 1), ops.mul.s(3)))
    launch = Launch(root["id"])
    launch.start(root, NOTHING, [])
    (message,) = launch.messages
    assert message.message_id == root["steps"][0]["id"]
    step = message.options["aury_wf"]
    assert step["wf"] == root["id"]
    assert step["next"] == [{"then": root["steps"][1]}]


def test_a_group_launch_joins_each_member_by_index(ops: Any) -> None:
    root = build(chain(ops.add.s(1, 1), group(ops.mul.s(2), ops.mul.s(3))))
    launch = Launch(root["id"])
    launch.start(root["steps"][1], 2, [])
    assert [m.args for m in launch.messages] == [(2, 2), (3, 2)]
    assert [m.options["aury_wf"]["next"] for m in launch.messages] == [
        [{"join": root["steps"][1]["id"], "i": 0}],
        [{"join": root["steps"][1]["id"], "i": 1}],
    ]
    assert launch.messages[0].options["priority"] == 4


def test_eager_workflows_run_inline(ops: Any) -> None:
    assert chain(ops.add.s(1, 2), ops.mul.s(10)).send().get_result() == 30
    assert group(ops.mul.s(i, i) for i in range(4)).send().get_results() == [0, 1, 4, 9]
    assert chord([ops.add.s(i, 1) for i in range(3)], ops.total.s()).send().get_result() == 6
    assert batch(ops.total, list(range(10)), chunk_size=4).send().get_results() == [6, 22, 17]
    four_stages = chain(
        group(ops.add.s(1, 1), ops.add.s(2, 2)), ops.total.s(), group(ops.mul.s(2)), ops.total.s()
    )
    assert four_stages.send().get_result() == 12
    assert asyncio.run(TaskChain().add(ops.add, 1, 2).add(ops.mul, 3, 4).execute()) == 12


def test_eager_member_failure_policies(ops: Any) -> None:
    with pytest.raises(PermanentError):
        chord([ops.add.s(1, 1), ops.fail.si("x")], ops.total.s()).send()
    handle = group([ops.add.s(1, 1), ops.fail.si("x")], member_failure="include").send()
    ok, failed = handle.get_results()
    assert ok == 2
    assert failed["error"]["type"] == "PermanentError"
