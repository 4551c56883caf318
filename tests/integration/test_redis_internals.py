"""aury-tasks's own fetch and send scripts keep Dramatiq's Redis layout, on a real Redis.

A message sent by aury-tasks is fetched, acknowledged and maintained by Dramatiq's own Redis
broker, and one sent by Dramatiq is fetched by aury-tasks's consumer: if the key layout or the
fetch bookkeeping drifted from Dramatiq's (after an upgrade, say), these fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

from aury_tasks.broker.redis import wakeup
from aury_tasks.broker.redis.base import FastRedisBroker
from aury_tasks.broker.redis.dramatiq_internals import WakingRedisConsumer
from aury_tasks.broker.redis.wakeup import Waker
from aury_tasks.core import keys

QUEUE = "compat"


@pytest.fixture
def brokers(redis_url: str) -> Iterator[tuple[FastRedisBroker, RedisBroker]]:
    ours = FastRedisBroker(client=redis.Redis.from_url(redis_url), namespace=keys.DEFAULT.prefix)
    theirs = RedisBroker(client=redis.Redis.from_url(redis_url), namespace=keys.DEFAULT.prefix)
    for broker in (ours, theirs):
        broker.declare_queue(QUEUE)
    yield ours, theirs
    ours.close()
    theirs.close()


def _message(number: int) -> dramatiq.Message[Any]:
    return dramatiq.Message(queue_name=QUEUE, actor_name="compat_task", args=(number,), kwargs={}, options={})


def _drain(consumer: Any, expected: int) -> list[Any]:
    received: list[Any] = []
    deadline = time.monotonic() + 10
    while len(received) < expected and time.monotonic() < deadline:
        message = next(consumer)
        if message is not None:
            received.append(message)
    return received


def test_dramatiq_consumes_what_aury_tasks_sends(brokers: tuple[FastRedisBroker, RedisBroker]) -> None:
    ours, theirs = brokers
    sent = [ours.enqueue(_message(number)) for number in range(5)]
    consumer = theirs.consume(QUEUE, prefetch=10, timeout=100)
    received = _drain(consumer, 5)
    assert [message.args for message in received] == [message.args for message in sent]
    for message in received:
        consumer.ack(message)
    client = ours.client
    assert client.hlen(keys.DEFAULT.broker_messages(QUEUE)) == 0
    assert client.scard(keys.DEFAULT.broker_fetched(theirs.broker_id, QUEUE)) == 0


def test_aury_tasks_consumes_what_dramatiq_sends(brokers: tuple[FastRedisBroker, RedisBroker]) -> None:
    ours, theirs = brokers
    sent = [theirs.enqueue(_message(number)) for number in range(5)]
    consumer = ours.consume(QUEUE, prefetch=10, timeout=100)
    assert isinstance(consumer, WakingRedisConsumer)
    try:
        received = _drain(consumer, 5)
        assert [message.args for message in received] == [message.args for message in sent]
        client = ours.client
        # Fetched as Dramatiq records it: in this worker's set of unacknowledged messages.
        assert client.scard(keys.DEFAULT.broker_fetched(ours.broker_id, QUEUE)) == 5
        for message in received:
            consumer.ack(message)
        assert ours.flush_acks()  # (acknowledgements are sent by the process's AckSender thread)
        assert client.scard(keys.DEFAULT.broker_fetched(ours.broker_id, QUEUE)) == 0
        assert client.hlen(keys.DEFAULT.broker_messages(QUEUE)) == 0
    finally:
        consumer.close()


def test_dramatiq_maintenance_gives_back_what_a_dead_aury_worker_fetched(
    brokers: tuple[FastRedisBroker, RedisBroker],
) -> None:
    ours, theirs = brokers
    ours.enqueue(_message(1))
    consumer = ours.consume(QUEUE, prefetch=10, timeout=100)
    try:
        assert len(_drain(consumer, 1)) == 1
    finally:
        consumer.close()
    # The aury worker "dies": its wake-up thread stops beating, its heartbeat is made stale, and
    # Dramatiq's maintenance runs.
    ours.close()
    client = ours.client
    client.zadd(keys.DEFAULT.broker_heartbeats(), {ours.broker_id: 1})
    theirs.do_fetch(QUEUE, 0)  # warm the script cache
    args = [
        "maintain", int(time.time() * 1000), QUEUE, theirs.broker_id, theirs.heartbeat_timeout,
        theirs.dead_message_ttl, 1, 100,
    ]  # fmt: skip
    theirs.scripts["dispatch"](args=args, keys=[keys.DEFAULT.prefix])
    assert client.llen(keys.DEFAULT.broker_queue(QUEUE)) == 1
    assert client.scard(keys.DEFAULT.broker_fetched(ours.broker_id, QUEUE)) == 0


def test_a_fetch_that_drains_the_queue_marks_it_idle_and_a_send_wakes_it(
    brokers: tuple[FastRedisBroker, RedisBroker],
) -> None:
    ours, _ = brokers
    client = ours.client
    pubsub = client.pubsub()
    pubsub.subscribe(keys.DEFAULT.wake_channel(QUEUE))
    try:
        assert ours.do_fetch(QUEUE, 5) == []
        assert client.exists(keys.DEFAULT.idle_marker(QUEUE)) == 1
        ours.enqueue(_message(1))
        ours.enqueue(_message(2))  # the marker is gone: no second signal
        assert client.exists(keys.DEFAULT.idle_marker(QUEUE)) == 0
        signals = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            item = pubsub.get_message(timeout=0.2)
            if item is not None and item["type"] == "message":
                signals.append(item)
            elif item is None and signals:
                break
        assert len(signals) == 1
        assert len(ours.do_fetch(QUEUE, 5)) == 2
        assert client.exists(keys.DEFAULT.idle_marker(QUEUE)) == 1  # fewer than asked: the queue is drained
    finally:
        pubsub.close()


def test_no_heartbeat_while_a_consumer_is_stuck(brokers: tuple[FastRedisBroker, RedisBroker]) -> None:
    ours, _ = brokers
    client = ours.client
    waker = Waker(ours)  # not started: its beat is called here
    event = waker.register(QUEUE)
    waker._turns[event] = (QUEUE, time.monotonic() - 3 * waker.beat_interval)  # last turned long ago
    waker._beat()
    assert client.zscore(keys.DEFAULT.broker_heartbeats(), ours.broker_id) is None
    waker.check_in(QUEUE, event)
    waker._beat()
    assert client.zscore(keys.DEFAULT.broker_heartbeats(), ours.broker_id) is not None


def test_closing_the_broker_ends_the_wake_up_thread_without_waiting_for_its_read(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its read of wake messages would last a minute: the thread must be told to stop, not notice.
    monkeypatch.setattr(wakeup, "LISTEN_TIMEOUT", 60.0)
    broker = FastRedisBroker(client=redis.Redis.from_url(redis_url), namespace=keys.DEFAULT.prefix,
                             heartbeat_timeout=3_600_000)  # fmt: skip  # a beat every 20 minutes
    waker = broker.waker
    assert waker.ready.wait(10)
    broker.close()  # waits at most 2 s for the thread
    assert not waker.is_alive()
    assert waker.stop_heard.is_set()


def test_a_newly_dead_worker_makes_maintenance_due_and_wakes_consumers(
    brokers: tuple[FastRedisBroker, RedisBroker],
) -> None:
    ours, _ = brokers
    waker = Waker(ours)
    event = waker.register(QUEUE)
    waker._beat()
    assert not event.is_set()
    client = ours.client
    stale = int(time.time() * 1000) - ours.heartbeat_timeout - 1000  # went stale a second ago
    client.zadd(
        keys.DEFAULT.broker_heartbeats(), {"a-quiet-sender": stale, "a-dead-worker": stale, "long-dead": 1}
    )
    client.sadd(keys.DEFAULT.broker_fetched("long-dead", QUEUE), "z")  # stale for ages: looked at before
    client.sadd(keys.DEFAULT.broker_fetched("a-dead-worker", "other-queue"), "x")
    waker._beat()  # stale, but holding nothing of this process's queues
    assert not event.is_set()
    client.sadd(keys.DEFAULT.broker_fetched("a-dead-worker", QUEUE), "y")
    waker._beat()
    assert event.is_set()
    event.clear()
    waker._beat()  # the same dead worker again: nothing new
    assert not event.is_set()


def test_a_closing_consumer_gives_back_what_it_fetched_but_did_not_hand_out(
    brokers: tuple[FastRedisBroker, RedisBroker],
) -> None:
    ours, _ = brokers
    for number in range(5):
        ours.enqueue(_message(number))
    consumer = ours.consume(QUEUE, prefetch=10, timeout=100)
    first = _drain(consumer, 1)[0]  # one fetch took all five; one was handed out
    consumer.close()
    client = ours.client
    assert client.llen(keys.DEFAULT.broker_queue(QUEUE)) == 4
    fetched = {item.decode() for item in client.smembers(keys.DEFAULT.broker_fetched(ours.broker_id, QUEUE))}
    assert fetched == {first.options["redis_message_id"]}
