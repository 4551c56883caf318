"""Idempotent tasks: a message whose work is done already is acknowledged without running again."""

from __future__ import annotations

import dramatiq
import pytest
import redis
from brokers import on_both_brokers

from aury_tasks import TaskManager, TaskOptionError, TaskStatus
from aury_tasks.core import keys

from .events import EventLog, wait_until

CHARGE = "sample_modules.jobs.tasks.charge"


def charges(client: redis.Redis, order: str) -> int:
    return int(client.get(f"test:charges:{order}") or 0)


def drained(client: redis.Redis) -> bool:
    return (
        client.llen(keys.DEFAULT.broker_queue("fixture")) == 0
        and client.hlen(keys.DEFAULT.broker_messages("fixture")) == 0
    )


def test_a_redelivered_message_of_an_idempotent_task_is_not_run_again(
    start_worker, producer: TaskManager, redis_client: redis.Redis, events: EventLog
) -> None:
    # Given an idempotent task (idempotent=True: its key is the task id) that ran and succeeded
    start_worker("-q", "fixture")
    handle = producer.get_task("charge").send("o1")
    assert handle.get_result(timeout=20) == "charged o1"

    # When the same message is delivered again (as after a worker killed before its ack)
    again = dramatiq.Message(queue_name="fixture", actor_name=CHARGE, args=("o1",), kwargs={}, options={},
                             message_id=handle.id)  # fmt: skip
    producer.broker.enqueue(again)

    # Then it is acknowledged without running: the effect happened once
    wait_until(lambda: drained(redis_client), timeout=10, what="the redelivery to be acknowledged")
    assert charges(redis_client, "o1") == 1
    assert len(events.all("charge", tag="o1")) == 1
    assert producer.task_record(handle.id).status is TaskStatus.SUCCESS


@on_both_brokers
def test_a_second_send_with_the_same_idempotency_key_is_not_run(
    start_worker, producer: TaskManager, redis_client: redis.Redis, queue
) -> None:
    # Given a task sent with an idempotency key, done
    start_worker("-q", queue("fixture"))
    charge = producer.get_task("charge")
    first = charge.send_with_options(args=("o2",), idempotency_key="order-o2")
    first.get_result(timeout=20)

    # When the same work is sent again with the same key (a client retrying its request)
    second = charge.send_with_options(args=("o2",), idempotency_key="order-o2")

    # Then it is not run; its record says which task did the work
    wait_until(lambda: second.status() is TaskStatus.SUCCESS, timeout=10, what="the second task to end")
    assert charges(redis_client, "o2") == 1
    assert producer.task_record(second.id).reason == (
        f"not run: idempotency key 'order-o2' was done by task {first.id}"
    )
    # And another key is other work
    charge.send_with_options(args=("o2",), idempotency_key="order-o2-refund").get_result(timeout=20)
    assert charges(redis_client, "o2") == 2


@on_both_brokers
def test_only_a_success_marks_the_work_done(
    start_worker, producer: TaskManager, events: EventLog, queue
) -> None:
    # Given a task that fails its first attempt, sent with an idempotency key
    start_worker("-q", queue("fixture"))
    handle = producer.get_task("fails_once").send_with_options(args=("k",), idempotency_key="fails-once-k")

    # Then its retry runs (the failed attempt did not count as done), and succeeds
    assert handle.get_result(timeout=20) == "retried k"
    assert len(events.all("fails_once", tag="k")) == 2


@pytest.mark.parametrize("key", ["", "x" * 257, 42])
def test_a_bad_idempotency_key_is_refused_at_send(producer: TaskManager, key: object) -> None:
    with pytest.raises(TaskOptionError, match="idempotency_key is text of 1 to 256 characters"):
        producer.get_task("charge").send_with_options(args=("o3",), idempotency_key=key)  # type: ignore[arg-type]
