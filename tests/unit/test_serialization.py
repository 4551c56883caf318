"""Arguments that are not JSON are refused at ``send``, naming the argument; nothing is enqueued."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from aury_tasks import PayloadTooLarge, SerializationError, TaskManager


@pytest.fixture
def job(memory_tm: TaskManager) -> Any:
    """A task on queue ``q`` of the stub broker, with the queue already declared (and empty)."""

    @memory_tm.conditional_task(queue_name="q", actor_name="jobs.process")
    def process(*args: Any, **kwargs: Any) -> None: ...

    memory_tm.broker_for_queue("q")
    return process


def queue_size(tm: TaskManager) -> int:
    broker = tm.broker
    assert isinstance(broker, StubBroker)
    return broker.queues["q"].qsize() + broker.queues["q.DQ"].qsize()


@pytest.mark.parametrize(
    ("args", "kwargs", "named", "type_name"),
    [
        ((object(),), {}, "argument 0", "object"),
        (("fine", {1, 2}), {}, "argument 1", "set"),
        ((), {"x": float("nan")}, "argument 'x'", "float"),
        ((), {"ok": 1, "big": float("inf")}, "argument 'big'", "float"),
        ((1,), {"when": datetime(2026, 1, 1, tzinfo=timezone.utc)}, "argument 'when'", "datetime"),
        ((Decimal("1.5"),), {}, "argument 0", "Decimal"),
        (([1, [2, b"bytes"]],), {}, "argument 0", "list"),
    ],
)
def test_a_non_json_argument_is_refused_by_name(
    job: Any, memory_tm: TaskManager, args: tuple, kwargs: dict, named: str, type_name: str
) -> None:
    # Given a task on the stub broker with an empty queue
    # When it is sent an argument strict JSON cannot encode
    with pytest.raises(SerializationError) as caught:
        job.send(*args, **kwargs)

    # Then the error (a TypeError) names that argument, its type and the task
    message = str(caught.value)
    assert message.startswith(f"{named} of jobs.process is not JSON-serializable ({type_name})")
    assert "\n" not in message
    assert isinstance(caught.value, TypeError)
    assert caught.value.exit_code == 2
    # and nothing was enqueued
    assert queue_size(memory_tm) == 0


def test_send_with_options_checks_arguments_too(job: Any, memory_tm: TaskManager) -> None:
    with pytest.raises(SerializationError, match="argument 'when'"):
        job.send_with_options(kwargs={"when": datetime.now(timezone.utc)}, delay=10)
    assert queue_size(memory_tm) == 0


def test_eager_mode_refuses_them_before_running(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a task in eager mode
    monkeypatch.setenv("TASK_RUN_MODE", "eager")
    tm = TaskManager.get_instance()
    calls = []

    @tm.conditional_task
    def record(value: Any) -> None:
        calls.append(value)

    # When it is sent a set
    # Then it fails as it would with a broker, without running
    with pytest.raises(SerializationError, match="argument 0"):
        record.send({1})
    assert calls == []


def test_json_values_are_accepted(job: Any, memory_tm: TaskManager) -> None:
    # Given a task on the stub broker
    # When it is sent every kind of JSON value
    job.send("text", 1, 2.5, True, None, [1, "two"], {"nested": {"list": []}}, key="value")

    # Then one message is enqueued
    assert queue_size(memory_tm) == 1


def test_a_message_over_the_size_limit_is_refused_before_anything_is_enqueued(
    job: Any, memory_tm: TaskManager
) -> None:
    # Given the default limit of 1 MiB
    # When a task is sent 2 MiB of text
    with pytest.raises(PayloadTooLarge) as caught:
        job.send("x" * (2 * 1024 * 1024))

    # Then the error is one line with the sizes and what to do, a ValueError, exit code 2
    message = str(caught.value)
    expected = (r"message of jobs\.process is 2,097,\d{3} bytes, over TASK_MAX_MESSAGE_BYTES \(1,048,576\);"
                r" pass a reference to the data \(a path, a key, an id\) instead")  # fmt: skip
    assert re.fullmatch(expected, message)
    assert isinstance(caught.value, ValueError) and caught.value.exit_code == 2
    assert queue_size(memory_tm) == 0

    # And a message just under the limit goes through
    job.send("x" * (1024 * 1024 - 1024))
    assert queue_size(memory_tm) == 1


def test_the_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a limit of 2,000 bytes, in eager mode (which refuses what a broker would)
    monkeypatch.setenv("TASK_MAX_MESSAGE_BYTES", "2000")
    monkeypatch.setenv("TASK_RUN_MODE", "eager")
    tm = TaskManager.get_instance()
    calls = []

    @tm.conditional_task
    def record(value: Any) -> None:
        calls.append(value)

    # Then 3,000 bytes are refused without running, 1,000 run
    with pytest.raises(PayloadTooLarge, match=r"over TASK_MAX_MESSAGE_BYTES \(2,000\)"):
        record.send("y" * 3000)
    record.send("z" * 1000)
    assert calls == ["z" * 1000]


def test_encode_message_gives_the_bytes_of_message_encode() -> None:
    # Given messages with arguments, options and unicode
    from aury_tasks.core.encoding import encode_message, install_strict_encoder

    install_strict_encoder()
    messages = [
        dramatiq.Message(queue_name="q", actor_name="a", args=(1, "é", [2]), kwargs={"k": None}, options={}),
        dramatiq.Message(queue_name="q.DQ", actor_name="b", args=(), kwargs={}, options={"eta": 5, "x": [1]}),
    ]

    # When they are encoded both ways, then the bytes are the same
    for message in messages:
        assert encode_message(message) == message.encode()


@pytest.mark.parametrize(
    "value",
    [{"a": [1, 2.5, "é", None, True, {"x": "\u2028"}]}, [], {}, "text", 1e300, {1: 2, None: 3}, [[[[]]]]],
)
def test_the_message_encoder_writes_what_json_dumps_writes(value: Any) -> None:
    from aury_tasks.core.encoding import StrictJSONEncoder

    assert StrictJSONEncoder().encode(value) == json.dumps(value, separators=(",", ":")).encode()


@pytest.mark.parametrize("value", [float("nan"), {"x": float("-inf")}, {"x": object()}, [{1, 2}]])
def test_the_message_encoder_refuses_what_strict_json_cannot_carry(value: Any) -> None:
    from aury_tasks.core.encoding import StrictJSONEncoder

    with pytest.raises((TypeError, ValueError)):
        StrictJSONEncoder().encode(value)


def test_the_message_encoder_refuses_data_that_refers_to_itself() -> None:
    from aury_tasks.core.encoding import StrictJSONEncoder

    circular: list[object] = []
    circular.append(circular)
    with pytest.raises(RecursionError):
        StrictJSONEncoder().encode(circular)
