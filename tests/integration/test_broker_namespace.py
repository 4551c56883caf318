"""AuryRedisBroker built directly with a ``namespace``, as Dramatiq's own tests build a broker.

One namespace governs every script (the fetch, the send, the ack, the priority send, recovery,
Dramatiq's dispatch for the nack, the requeue, the queue size and maintenance, the wake-ups): it
is the key prefix. So with ``namespace="dramatiq"`` a send is counted by ``do_qsize``, ``join``
waits for it, a retry and a delayed message come back, a failure is dead-lettered, and no key is
written outside ``dramatiq:``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import dramatiq
import pytest
import redis

from aury_tasks.broker.redis.broker import MAINTENANCE_INTERVAL, AuryRedisBroker
from aury_tasks.core.keys import KeySpace

QUEUE = "conformance"
NAMESPACE = "dramatiq"


@pytest.fixture
def broker(redis_url: str) -> Iterator[AuryRedisBroker]:
    broker = AuryRedisBroker(
        client=redis.Redis.from_url(redis_url),
        namespace=NAMESPACE,
        maintenance_interval=MAINTENANCE_INTERVAL,
        heartbeat_timeout=5_000,
    )
    yield broker
    broker.close()


def test_every_key_of_a_broker_built_with_a_namespace_is_under_it(
    broker: AuryRedisBroker, redis_client: redis.Redis
) -> None:
    # Given actors on a broker built with namespace="dramatiq": one that succeeds, one that fails
    # once then succeeds (a retry through the delay queue), one that always fails
    done: list[str] = []
    attempts: dict[str, int] = {}
    lock = threading.Lock()

    @dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=0)
    def works(tag: str) -> None:
        with lock:
            done.append(tag)

    @dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=3, min_backoff=10, max_backoff=50)
    def fails_once(tag: str) -> None:
        with lock:
            attempts[tag] = attempts.get(tag, 0) + 1
            if attempts[tag] == 1:
                raise RuntimeError("first attempt")
            done.append(tag)

    @dramatiq.actor(broker=broker, queue_name=QUEUE, max_retries=0)
    def always_fails() -> None:
        raise RuntimeError("for good")

    assert broker.keys == KeySpace(NAMESPACE)

    # When messages are sent (plain, with a priority, delayed, to retry, to fail)
    works.send("plain")
    works.send_with_options(args=("urgent",), priority=5)
    works.send_with_options(args=("later",), delay=200)
    fails_once.send("retried")
    failing = always_fails.send()

    # Then the queue's size counts them before any worker runs
    assert broker.do_qsize(QUEUE) == 5  # four waiting and one delayed (Dramatiq counts both)

    # When a worker consumes the queue until join() says it is empty
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        broker.join(QUEUE, timeout=20_000)
        worker.join()
    finally:
        worker.stop()

    # Then every message ran (the retry and the delayed one too) and was acknowledged
    assert sorted(done) == ["later", "plain", "retried", "urgent"]
    assert attempts == {"retried": 2}
    assert broker.do_qsize(QUEUE) == 0
    assert redis_client.hlen(f"{NAMESPACE}:{QUEUE}.msgs") == 0
    # ... the failure was dead-lettered under the namespace
    dead = redis_client.hgetall(f"{NAMESPACE}:{QUEUE}.XQ.msgs")
    assert [dramatiq.Message.decode(body.encode()).message_id for body in dead.values()] == [
        failing.message_id
    ]
    # ... and no key at all is outside it
    written = list(redis_client.scan_iter())
    assert written and all(key.startswith(f"{NAMESPACE}:") for key in written), written
    assert not [key for key in written if key.startswith("aury:")]


def test_a_stopping_worker_gives_its_prefetched_messages_back_under_the_namespace(
    broker: AuryRedisBroker, redis_client: redis.Redis
) -> None:
    # Given messages fetched by a consumer of the namespaced broker
    @dramatiq.actor(broker=broker, queue_name=QUEUE)
    def noop(index: int) -> None: ...

    for index in range(5):
        noop.send(index)
    consumer = broker.consume(QUEUE, prefetch=5, timeout=100)
    first = next(consumer)
    assert first is not None
    assert redis_client.llen(f"{NAMESPACE}:{QUEUE}") == 0
    fetched = redis_client.smembers(f"{NAMESPACE}:__acks__.{broker.broker_id}.{QUEUE}")
    assert len(fetched) == 5

    # When it acks one and closes
    consumer.ack(first)
    broker.flush_acks()
    consumer.close()

    # Then the four it held went back to the namespace's queue (Dramatiq's requeue) and none is
    # left fetched; the queue's size says so
    assert redis_client.llen(f"{NAMESPACE}:{QUEUE}") == 4
    assert broker.do_qsize(QUEUE) == 4
    assert all(key.startswith(f"{NAMESPACE}:") for key in redis_client.scan_iter())
