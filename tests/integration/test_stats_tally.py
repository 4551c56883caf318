"""A worker's statistics tally writes what the final write's script would have, once a second."""

from __future__ import annotations

import redis

from aury_tasks.core import keys
from aury_tasks.core.status import TaskStatus
from aury_tasks.ledger import RedisLedger
from aury_tasks.ledger.tally import StatsTally

from .conftest import Restartable

NOW = 1_765_000_000.0


def _buckets(client: redis.Redis) -> dict[str, dict[str, str]]:
    """Every statistics bucket on the server, by key, and whether it has a lifetime."""
    found = {}
    for key in client.scan_iter(match="aury:ledger:stats:*"):
        found[key] = {**client.hgetall(key), "has ttl": str(client.ttl(key) > 0)}
    return found


def _end_tasks(store: RedisLedger) -> None:
    """Two tasks that succeeded and one that failed, one of them written twice (refused)."""
    for task_id, status, duration in (("a", TaskStatus.SUCCESS, 0.25), ("b", TaskStatus.SUCCESS, 1.5),
                                      ("c", TaskStatus.FAILURE, 0.01)):  # fmt: skip
        store.transition_write(task_id, status, queue_name="q1", task_name="m.t", duration=duration,
                               now=NOW).run(store.client)  # fmt: skip
    refused = store.transition_write(
        "a", TaskStatus.FAILURE, queue_name="q1", task_name="m.t", duration=9.0, now=NOW
    )
    assert refused.run(store.client) == 0


def test_a_tally_writes_the_same_buckets_as_the_script(redis_url: str, redis_client: redis.Redis) -> None:
    # Given the buckets the final writes' script counts, for three tasks (and one write refused)
    store = RedisLedger(redis.Redis.from_url(redis_url, decode_responses=True), keys.DEFAULT, ttl=600)
    _end_tasks(store)
    counted_by_script = _buckets(redis_client)
    assert len(counted_by_script) == 6
    redis_client.flushdb()

    # When the same tasks end in a worker whose tally counts them, and the tally flushes
    store.tally = StatsTally(store.client, store.keys, hour_ttl=600 + 3600)
    _end_tasks(store)
    assert _buckets(redis_client) == {}  # nothing written before the flush
    assert store.tally.flush()

    # Then the buckets are the same, counts, duration sums, histograms and lifetimes
    assert _buckets(redis_client) == counted_by_script


def test_counts_wait_out_a_redis_that_cannot_be_reached(private: Restartable) -> None:
    # Given a tally with a count, and its Redis stopped
    client = redis.Redis.from_url(private.url, decode_responses=True)
    tally = StatsTally(client, keys.DEFAULT, hour_ttl=3600)
    tally.count(int(NOW * 1000), "q1", "m.t", "success", "", "")
    private.stop()

    # When it flushes, then counts one more and flushes once Redis is back
    assert tally.flush() is False
    tally.count(int(NOW * 1000), "q1", "m.t", "success", "", "")
    private.start()
    assert tally.flush() is True

    # Then both counts are there, in each dimension
    counts = [client.hget(key, "success") for key in sorted(client.scan_iter(match="aury:ledger:stats:*"))]
    assert counts == ["2"] * 6


def test_a_closed_tally_writes_late_counts_at_once(redis_url: str, redis_client: redis.Redis) -> None:
    # Given a tally whose worker shut down (its thread stopped)
    tally = StatsTally(
        redis.Redis.from_url(redis_url, decode_responses=True), keys.DEFAULT, hour_ttl=3600, interval=60
    )
    tally.start()
    tally.close()

    # When an acknowledgement sent after that counts its task
    tally.count(int(NOW * 1000), "q1", "m.t", "failure", "1000", "31")

    # Then it is written without waiting for a flush
    assert [
        redis_client.hget(key, "failure") for key in redis_client.scan_iter(match="aury:ledger:stats:*")
    ] == ["1"] * 6
