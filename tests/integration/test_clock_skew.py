"""Hosts whose clocks disagree: heartbeats, recovery and etas are on the Redis server's clock.

The test process plays a host whose wall clock is 30 s ahead (``time.time``, and Dramatiq's
``current_millis``, moved on) once the others have written what they write;
the many-hosts suite (``tests/scale/test_clock_skew.py``) runs a whole worker host 30 s ahead
under libfaketime.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dramatiq
import dramatiq.common
import pytest
import redis

from aury_tasks.broker.redis.broker import AuryRedisBroker
from aury_tasks.core import keys
from aury_tasks.redis.clock import ServerClock

#: How far the skewed host's clock is ahead of the server's.
SKEW = 30.0


def _broker(redis_url: str) -> AuryRedisBroker:
    """A broker taking a worker silent for 2 s for dead."""
    return AuryRedisBroker(url=redis_url, middleware=[], namespace=keys.DEFAULT.prefix,
                           heartbeat_timeout=2_000, maintenance_interval=60)  # fmt: skip


@pytest.fixture
def ahead(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[], AuryRedisBroker]:
    """Makes this process a host 30 s ahead (``time.time``), and a broker there."""
    real = time.time
    brokers: list[AuryRedisBroker] = []

    def make() -> AuryRedisBroker:
        skewed = lambda: real() + SKEW  # noqa: E731
        monkeypatch.setattr(time, "time", skewed)
        monkeypatch.setattr(dramatiq.common, "time", skewed)  # its current_millis
        broker = _broker(redis_url)
        broker.clock = ServerClock(broker.client, local=time.time)
        brokers.append(broker)
        return broker

    yield make  # type: ignore[misc]
    monkeypatch.undo()
    for broker in brokers:
        broker.close()


def _noop(queue_name: str = "first") -> dramatiq.Message[object]:
    return dramatiq.Message(queue_name=queue_name, actor_name="noop", args=(), kwargs={}, options={})


def _server_millis(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds * 1000 + micros / 1000


def test_a_host_ahead_beats_on_the_server_s_clock_and_takes_no_live_worker_for_dead(
    redis_url: str, redis_client: redis.Redis, ahead: Callable[[], AuryRedisBroker]
) -> None:
    # Given a worker holding a message, its heartbeat fresh
    holder = _broker(redis_url)
    try:
        sent = holder.enqueue(_noop())
        assert holder.do_fetch("first", 1)
        # ... and a worker on a host 30 s ahead
        skewed = ahead()

        # When the host ahead runs its recovery of that queue (as its first fetch does)
        assert skewed._recover("first") is True

        # Then the holder keeps its message: by the server's clock its heartbeat is fresh
        fetched = keys.DEFAULT.broker_fetched(holder.broker_id, "first")
        assert redis_client.smembers(fetched) == {sent.options["redis_message_id"]}
        assert redis_client.llen(keys.DEFAULT.broker_queue("first")) == 0
        # ... and the heartbeat the host ahead wrote is the server's time, not 30 s in the future
        beat = redis_client.zscore(keys.DEFAULT.broker_heartbeats(), skewed.broker_id)
        assert beat == pytest.approx(_server_millis(redis_client), abs=2_000)
    finally:
        holder.close()


def test_a_delayed_message_sent_from_a_host_ahead_is_due_by_the_server_s_clock(
    redis_client: redis.Redis, ahead: Callable[[], AuryRedisBroker]
) -> None:
    # When a producer on a host 30 s ahead sends a message delayed by 10 s
    sent = ahead().enqueue(_noop(), delay=10_000)

    # Then its eta is 10 s from now on the server's clock (not 40 s)
    assert sent.options["eta"] == pytest.approx(_server_millis(redis_client) + 10_000, abs=2_000)
