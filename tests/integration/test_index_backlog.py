"""A send writes only the record; the index entries follow in batches, and no read misses them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio
from conftest import WorkerProcess

from aury_tasks import TaskManager
from aury_tasks.core import keys
from aury_tasks.core.status import TaskStatus
from aury_tasks.ledger import RedisLedger
from aury_tasks.redis.scripts import INDEX_BACKLOG_LIMIT, run_calls

from .events import wait_until


@pytest.fixture
def store(redis_url: str) -> RedisLedger:
    return RedisLedger(redis.Redis.from_url(redis_url, decode_responses=True), keys.DEFAULT, ttl=60)


def _send_write(store: RedisLedger, task_id: str, queue: str = "q", task: str = "m.t") -> Any:
    return store.send_write(task_id, TaskStatus.PENDING, queue_name=queue, task_name=task, now=time.time())


def _indexed(client: redis.Redis, key: str) -> list[str]:
    return list(client.zrange(key, 0, -1))


def test_a_send_writes_the_record_and_leaves_the_index_entries_to_the_first_read(
    store: RedisLedger, redis_client: redis.Redis
) -> None:
    # Given a send's write of a new record
    assert _send_write(store, "s1").run(store.client) == 1

    # Then the record is there, its id waits in the backlog, no index holds it yet
    assert store.status("s1") is TaskStatus.PENDING
    assert redis_client.lrange(keys.DEFAULT.unindexed(), 0, -1) == ["s1"]
    assert _indexed(redis_client, keys.DEFAULT.all_index()) == []

    # When the ledger is queried
    page = store.list_tasks(status=TaskStatus.PENDING, queue_name="q")

    # Then the query already sees it, and every index it belongs in holds it
    assert [record.id for record in page.items] == ["s1"]
    indexes = [keys.DEFAULT.all_index(), keys.DEFAULT.queue_index("q"), keys.DEFAULT.task_name_index("m.t"),
               keys.DEFAULT.task_queue_index("m.t", "q"), keys.DEFAULT.status_index("pending"),
               keys.DEFAULT.status_index("pending", queue_name="q"),
               keys.DEFAULT.status_index("pending", task_name="m.t")]  # fmt: skip
    for key in indexes:
        assert _indexed(redis_client, key) == ["s1"], key
    assert store.queues() == {"q"} and store.task_names() == {"m.t"}
    assert redis_client.llen(keys.DEFAULT.unindexed()) == 0
    # and the record got its lifetime
    assert 0 < redis_client.pttl(keys.DEFAULT.task_record("s1")) <= 60_000


def test_a_record_that_moved_on_before_its_catch_up_is_indexed_under_its_current_status(
    store: RedisLedger, redis_client: redis.Redis
) -> None:
    # Given a sent task that started and succeeded before anyone read an index
    _send_write(store, "s2").run(store.client)
    assert store.transition("s2", TaskStatus.STARTED)
    assert store.transition("s2", TaskStatus.SUCCESS, finished_at=time.time())

    # When the indexes catch up
    assert store.catch_up() == 1

    # Then it is listed as succeeded, and nowhere as pending or started
    assert [r.id for r in store.list_tasks(status=TaskStatus.SUCCESS).items] == ["s2"]
    assert store.list_tasks(status=TaskStatus.PENDING).total == 0
    assert store.list_tasks(status=TaskStatus.STARTED).total == 0
    assert store.list_tasks(queue_name="q").total == 1
    assert store.count_by_status("q", [TaskStatus.SUCCESS, TaskStatus.PENDING]) == {
        TaskStatus.SUCCESS: 1,
        TaskStatus.PENDING: 0,
    }


def test_status_writes_before_the_catch_up_touch_no_index_and_move_it_after(
    store: RedisLedger, redis_client: redis.Redis
) -> None:
    # Given a sent task that started before its catch-up
    _send_write(store, "s4").run(store.client)
    assert store.transition("s4", TaskStatus.STARTED)

    # Then no status index holds it yet: the write moved it in none (the catch-up will)
    for status in ("pending", "started"):
        assert _indexed(redis_client, keys.DEFAULT.status_index(status)) == [], status
    assert redis_client.hget(keys.DEFAULT.task_record("s4"), "unindexed") == "1"
    assert redis_client.pttl(keys.DEFAULT.task_record("s4")) == -1  # its lifetime comes with its indexing

    # When the indexes catch up, and then the task succeeds
    assert store.catch_up() == 1
    assert redis_client.hget(keys.DEFAULT.task_record("s4"), "unindexed") is None
    assert 0 < redis_client.pttl(keys.DEFAULT.task_record("s4")) <= 60_000
    assert _indexed(redis_client, keys.DEFAULT.status_index("started", queue_name="q")) == ["s4"]
    assert store.transition("s4", TaskStatus.SUCCESS, finished_at=time.time())

    # Then that write moves it between the status indexes as any indexed record
    for key in (keys.DEFAULT.status_index("started"), keys.DEFAULT.status_index("started", queue_name="q"),
                keys.DEFAULT.status_index("started", task_name="m.t")):  # fmt: skip
        assert _indexed(redis_client, key) == [], key
    for key in (keys.DEFAULT.status_index("success"), keys.DEFAULT.status_index("success", queue_name="q"),
                keys.DEFAULT.status_index("success", task_name="m.t")):  # fmt: skip
        assert _indexed(redis_client, key) == ["s4"], key


def test_a_send_to_an_existing_record_is_an_ordinary_status_write(store: RedisLedger) -> None:
    # Given a record already further on (the worker's write arrived first)
    store.transition("s3", TaskStatus.STARTED, queue_name="q", task_name="m.t")
    store.transition("s3", TaskStatus.SUCCESS)

    # When the send's write arrives late, it is refused as before
    assert _send_write(store, "s3").run(store.client) == 0
    assert store.status("s3") is TaskStatus.SUCCESS
    assert store.client.llen(keys.DEFAULT.unindexed()) == 0


def test_an_expired_record_in_the_backlog_is_skipped(store: RedisLedger, redis_client: redis.Redis) -> None:
    _send_write(store, "gone").run(store.client)
    redis_client.delete(keys.DEFAULT.task_record("gone"))

    assert store.catch_up() == 1
    assert _indexed(redis_client, keys.DEFAULT.all_index()) == []


def test_sends_index_a_batch_themselves_once_the_backlog_is_over_its_limit(
    store: RedisLedger, redis_client: redis.Redis
) -> None:
    # Given more sends than the backlog may hold, with nobody reading and no worker
    count = INDEX_BACKLOG_LIMIT + 200
    writes = [_send_write(store, f"b{n}") for n in range(count)]
    run_calls(store.client, writes, chunk_size=1_000)

    # Then the backlog stayed at its limit: the sends over it indexed older ids
    waiting = redis_client.llen(keys.DEFAULT.unindexed())
    assert waiting <= INDEX_BACKLOG_LIMIT + 1
    assert redis_client.zcard(keys.DEFAULT.all_index()) == count - waiting
    # and a read still sees every task
    assert store.list_tasks(queue_name="q", page_size=1).total == count


def test_a_worker_that_ran_tasks_catches_the_indexes_up_without_any_reader(
    producer: TaskManager,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
) -> None:
    # Given a worker and tasks sent to it
    worker = start_worker("-q", "fixture")
    add = producer.get_task("add")
    handles = [add.send(n, 1) for n in range(20)]
    assert [handle.get_result(timeout=30) for handle in handles] == [n + 1 for n in range(20)]

    # Then within a heartbeat the worker has indexed them, nobody having read an index
    wait_until(
        lambda: redis_client.llen(keys.DEFAULT.unindexed()) == 0, timeout=15, what="the backlog to empty"
    )
    assert redis_client.zcard(keys.DEFAULT.status_index("success")) >= 20
    worker.stop()


@pytest.mark.parametrize("on_the_event_loop", [False, True])
def test_a_page_read_past_a_backlog_bigger_than_its_call_indexes_sees_every_task(
    store: RedisLedger, redis_client: redis.Redis, redis_url: str, on_the_event_loop: bool
) -> None:
    # Given a backlog of 2,500 sends (more than the page's script indexes in one call)
    run_calls(store.client, [_send_write(store, f"p{n:04d}") for n in range(2_500)], chunk_size=1_000)
    assert redis_client.llen(keys.DEFAULT.unindexed()) == 2_500

    # When the newest page is read, with the sync client or on an event loop
    if on_the_event_loop:
        client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)

        async def read() -> Any:
            try:
                return await store.list_tasks_async(client, queue_name="q", page_size=5)
            finally:
                await client.aclose()

        page = asyncio.run(read())
    else:
        page = store.list_tasks(queue_name="q", page_size=5)

    # Then every send is counted and the page holds the newest, the backlog being done
    assert page.total == 2_500 and len(page.items) == 5
    assert {record.id for record in page.items} <= {f"p{n:04d}" for n in range(2_500)}
    assert redis_client.llen(keys.DEFAULT.unindexed()) == 0
