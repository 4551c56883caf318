"""Run modes: a producer only sends, a worker registers actors, eager runs ``.send()`` inline."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from aury_tasks import BrokerUnavailable, RunMode, TaskHandle, TaskManager


def queued_messages(broker: dramatiq.Broker, queue_name: str) -> list[dramatiq.Message[Any]]:
    """Take every message waiting in a StubBroker queue."""
    assert isinstance(broker, StubBroker)
    queue = broker.queues[queue_name]
    messages = []
    while not queue.empty():
        messages.append(dramatiq.Message.decode(queue.get_nowait()))
        queue.task_done()
    return messages


def message_fields(message: dramatiq.Message[Any]) -> dict[str, Any]:
    return {
        "queue_name": message.queue_name,
        "actor_name": message.actor_name,
        "args": list(message.args),
        "kwargs": message.kwargs,
        "options": message.options,
    }


def declare_add(tm: TaskManager) -> Any:
    def add(x: int, y: int, *, scale: int = 1) -> int:
        return (x + y) * scale

    return tm.conditional_task(queue_name="math", actor_name="calc.add")(add)


# Producer


def test_the_default_mode_is_producer() -> None:
    # Given no TASK_RUN_MODE and no initialize call
    tm = TaskManager.get_instance()

    # Then the manager is a producer, which has not built a broker yet
    assert tm.run_mode is RunMode.PRODUCER
    assert not tm.is_initialized


def test_a_producer_registers_no_actor_and_sends(memory_tm: TaskManager) -> None:
    # Given a producer on the stub broker
    add = declare_add(memory_tm)

    # When a task is sent
    handle = add.send(2, 3, scale=10)

    # Then no Dramatiq actor exists, yet the message is in the task's queue
    assert add.actor is None
    assert memory_tm.broker.actors == {}
    assert isinstance(handle, TaskHandle)
    assert (handle.task_name, handle.queue_name) == ("calc.add", "math")
    assert handle.eta is None
    assert not handle.eager
    (message,) = queued_messages(memory_tm.broker, "math")
    assert message.message_id == handle.id
    assert message_fields(message) == {
        "queue_name": "math",
        "actor_name": "calc.add",
        "args": [2, 3],
        "kwargs": {"scale": 10},
        "options": {},
    }
    with pytest.raises(RuntimeError, match="no inline result"):
        _ = handle.eager_result


def test_producer_and_worker_send_the_same_message() -> None:
    # Given the same task declared in a producer and in a worker
    producer = TaskManager("producer")
    producer.initialize(broker_url="memory://")
    producer_add = declare_add(producer)
    worker = TaskManager("worker")
    worker.initialize(run_mode="worker", broker_url="memory://")
    worker_add = declare_add(worker)
    assert producer_add.actor is None
    assert worker_add.actor is not None

    # When each sends the task with the same arguments, and Dramatiq's own actor builds its message
    producer_add.send(1, 2, scale=3)
    worker_add.send(1, 2, scale=3)
    native = worker_add.actor.message_with_options(args=(1, 2), kwargs={"scale": 3})

    # Then the three messages differ only in their ids and timestamps
    (from_producer,) = queued_messages(producer.broker, "math")
    (from_worker,) = queued_messages(worker.broker, "math")
    assert message_fields(from_producer) == message_fields(from_worker) == message_fields(native)
    assert from_producer.message_id != from_worker.message_id
    # and what is on the wire decodes to the same JSON keys
    assert json.loads(from_producer.encode()).keys() == json.loads(native.encode()).keys()
    producer.close()
    worker.close()


def test_send_with_options_picks_queue_delay_and_message_options(memory_tm: TaskManager) -> None:
    # Given a producer on the stub broker
    add = declare_add(memory_tm)

    # When a task is sent to another queue with a delay and a message option
    before = time.time()
    handle = add.send_with_options(args=(1, 1), queue_name="urgent", delay=60, max_retries=0)

    # Then the message waits in that queue's delay queue and the handle says when it is due
    assert handle.queue_name == "urgent"
    assert handle.eta is not None
    assert before + 59 <= handle.eta.timestamp() <= time.time() + 61
    assert queued_messages(memory_tm.broker, "urgent") == []
    (delayed,) = queued_messages(memory_tm.broker, "urgent.DQ")
    assert delayed.options["max_retries"] == 0
    assert delayed.options["eta"] >= int((before + 60) * 1000)


def test_send_refuses_both_delay_and_eta(memory_tm: TaskManager) -> None:
    from datetime import datetime, timezone

    add = declare_add(memory_tm)

    with pytest.raises(ValueError, match="delay or eta, not both"):
        add.send_with_options(args=(1, 1), delay=1, eta=datetime.now(timezone.utc))


# Worker


def test_worker_mode_registers_actors_declared_before_and_after_initialize() -> None:
    # Given a task declared before the manager is initialized in worker mode
    tm = TaskManager.get_instance()

    @tm.conditional_task(queue_name="early")
    def early() -> str:
        return "early"

    assert early.actor is None

    # When the manager is initialized in worker mode and another task is declared afterwards
    broker = tm.initialize(run_mode="worker", broker_url="memory://")

    @tm.conditional_task(queue_name="late")
    def late() -> str:
        return "late"

    # Then both are Dramatiq actors on the manager's broker, and still plain callables
    assert tm.run_mode is RunMode.WORKER
    assert early.actor is not None
    assert late.actor is not None
    assert early.actor.broker is broker
    assert set(broker.actors) == {early.name, late.name}
    assert {"early", "late"} <= broker.get_declared_queues()
    assert early() == "early"
    assert late() == "late"


def test_closing_the_manager_drops_the_actors(worker_tm: TaskManager) -> None:
    # Given a task that is an actor
    @worker_tm.conditional_task
    def job() -> None: ...

    assert job.actor is not None

    # When the manager is closed and initialized again
    worker_tm.close()
    assert job.actor is None
    broker = worker_tm.initialize()

    # Then the task is an actor of the new broker
    assert job.actor is not None
    assert job.actor.broker is broker


def test_run_mode_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given TASK_RUN_MODE=worker
    monkeypatch.setenv("TASK_RUN_MODE", "worker")
    monkeypatch.setenv("TASK_BROKER_URL", "memory://")
    tm = TaskManager.get_instance()

    # When a task is declared and the broker built on first use
    @tm.conditional_task
    def job() -> None: ...

    broker = tm.broker

    # Then it is an actor
    assert tm.run_mode is RunMode.WORKER
    assert job.actor is not None
    assert job.name in broker.actors


# Eager


@pytest.fixture
def eager_tm(monkeypatch: pytest.MonkeyPatch) -> TaskManager:
    """The default manager with TASK_RUN_MODE=eager."""
    monkeypatch.setenv("TASK_RUN_MODE", "eager")
    tm = TaskManager.get_instance()
    assert tm.run_mode is RunMode.EAGER
    return tm


def test_eager_runs_a_sync_task_inline(eager_tm: TaskManager) -> None:
    # Given a sync task in eager mode
    calls = []

    @eager_tm.conditional_task(queue_name="math")
    def add(x: int, y: int) -> int:
        calls.append((x, y))
        return x + y

    # When it is sent
    handle = add.send(2, y=3)

    # Then it ran before send returned, and the handle carries its result; no broker was built
    assert calls == [(2, 3)]
    assert handle.eager
    assert handle.eager_result == 5
    assert handle.task_name == add.name
    assert handle.queue_name == "math"
    assert handle.id
    assert not eager_tm.is_initialized


def test_eager_runs_an_async_task_inline(eager_tm: TaskManager) -> None:
    # Given an async task in eager mode
    @eager_tm.conditional_task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    # When it is sent from synchronous code
    handle = double.send(21)

    # Then its coroutine ran to completion
    assert handle.eager_result == 42


def test_eager_works_inside_a_running_event_loop(eager_tm: TaskManager) -> None:
    # Given an async and a sync task in eager mode
    @eager_tm.conditional_task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    @eager_tm.conditional_task
    def triple(x: int) -> int:
        return 3 * x

    # When both are sent from code running on an event loop (an async web handler)
    async def handler() -> tuple[Any, Any]:
        return double.send(5).eager_result, triple.send(5).eager_result

    # Then both ran inline
    assert asyncio.run(handler()) == (10, 15)


def test_eager_round_trips_arguments_through_json(eager_tm: TaskManager) -> None:
    # Given a task that reports what it received
    @eager_tm.conditional_task
    def echo(*args: Any, **kwargs: Any) -> Any:
        return args, kwargs

    # When it is sent tuples and nested values
    handle = echo.send((1, 2), {"point": (3, 4)}, flag=True, nothing=None)

    # Then it sees what a worker would: tuples became lists
    args, kwargs = handle.eager_result
    assert args == ([1, 2], {"point": [3, 4]})
    assert kwargs == {"flag": True, "nothing": None}


def test_eager_propagates_exceptions(eager_tm: TaskManager) -> None:
    # Given failing sync and async tasks
    @eager_tm.conditional_task
    def broken() -> None:
        raise KeyError("missing")

    @eager_tm.conditional_task
    async def broken_async() -> None:
        raise ValueError("bad")

    # When / Then sending them raises their exception
    with pytest.raises(KeyError, match="missing"):
        broken.send()
    with pytest.raises(ValueError, match="bad"):
        broken_async.send()


def test_an_unreachable_broker_raises_broker_unavailable_without_the_password() -> None:
    # Given a producer whose Redis nobody listens on
    tm = TaskManager.get_instance()
    tm.initialize(broker_url="redis://:hunter2@127.0.0.1:1/0")
    add = declare_add(tm)

    # When a task is sent
    with pytest.raises(BrokerUnavailable) as caught:
        add.send(1, 2)

    # Then the error names the task and the masked URL, with exit code 4
    message = str(caught.value)
    assert message.startswith("cannot send calc.add: broker redis://:***@127.0.0.1:1/0 unreachable (")
    assert "hunter2" not in message
    assert caught.value.exit_code == 4
    assert isinstance(caught.value, ConnectionError)


def test_send_many_on_the_stub_broker_sends_one_message_per_call(memory_tm: TaskManager) -> None:
    # Given a producer on the stub broker
    add = declare_add(memory_tm)

    # When three calls are sent at once, with options for all
    handles = add.send_many([(1, 2), {"x": 3, "y": 4, "scale": 2}, [5, 6]], priority=3)

    # Then each is a message of its own, in order, with its arguments and the shared options
    messages = queued_messages(memory_tm.broker, "math")
    assert [m.message_id for m in messages] == [h.id for h in handles]
    assert [(list(m.args), m.kwargs) for m in messages] == [
        ([1, 2], {}),
        ([], {"x": 3, "y": 4, "scale": 2}),
        ([5, 6], {}),
    ]
    assert {m.options["priority"] for m in messages} == {3}


def test_send_many_in_eager_mode_runs_each_call(eager_tm: TaskManager) -> None:
    add = declare_add(eager_tm)
    assert [h.eager_result for h in add.send_many([(1, 2), {"x": 1, "y": 1, "scale": 5}])] == [3, 10]
    with pytest.raises(TypeError, match="argument 0"):
        add.send_many([(1, 2), (float("nan"), 1)])
