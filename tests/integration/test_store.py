"""The Redis ledger store applies status writes atomically and forward-only, on a real Redis."""

from __future__ import annotations

import itertools
import threading

import pytest
import redis

from aury_tasks import keys
from aury_tasks.status import TaskStatus
from aury_tasks.store import RedisTaskStore


@pytest.fixture
def store(redis_url: str) -> RedisTaskStore:
    return RedisTaskStore(redis.Redis.from_url(redis_url), ttl=60)


def test_a_record_follows_a_task_and_keeps_its_fields(store: RedisTaskStore) -> None:
    # Given a task enqueued, started and finished
    assert store.transition("t1", TaskStatus.PENDING, task_name="m.add", queue_name="q", enqueued_at=1.5,
                            metadata={"user_id": "42"})  # fmt: skip
    assert store.transition("t1", TaskStatus.STARTED, started_at=2.0, worker="host:1")
    assert store.transition("t1", TaskStatus.SUCCESS, finished_at=2.5, result={"sum": 3})

    # When it is read back
    record = store.get("t1")

    # Then every field is there, JSON values decoded
    assert record is not None
    assert record.status is TaskStatus.SUCCESS
    assert (record.task_name, record.queue_name, record.worker) == ("m.add", "q", "host:1")
    assert record.metadata == {"user_id": "42"}
    assert record.result == {"sum": 3}
    assert record.duration == pytest.approx(0.5)


def test_a_late_pending_write_does_not_overwrite_success(store: RedisTaskStore) -> None:
    # Given a task the worker finished before the producer's enqueue write arrived
    store.transition("t2", TaskStatus.STARTED)
    store.transition("t2", TaskStatus.SUCCESS, result=1)

    # When the late write arrives
    applied = store.transition("t2", TaskStatus.PENDING)

    # Then it is refused and the record still says success
    assert applied is False
    record = store.get("t2")
    assert record is not None
    assert record.status is TaskStatus.SUCCESS


def test_the_status_index_moves_with_the_record(store: RedisTaskStore, redis_client: redis.Redis) -> None:
    store.transition("t3", TaskStatus.PENDING)
    assert redis_client.zrange(keys.status_index("pending"), 0, -1) == ["t3"]

    store.transition("t3", TaskStatus.STARTED)

    assert redis_client.zrange(keys.status_index("pending"), 0, -1) == []
    assert redis_client.zrange(keys.status_index("started"), 0, -1) == ["t3"]


def test_every_record_expires(store: RedisTaskStore, redis_client: redis.Redis) -> None:
    store.transition("t4", TaskStatus.PENDING)
    assert 0 < redis_client.pttl(keys.task_record("t4")) <= 60_000


def test_an_unknown_id_has_no_record(store: RedisTaskStore) -> None:
    assert store.get("never-sent") is None


@pytest.mark.parametrize(("current", "new"), list(itertools.product(TaskStatus, TaskStatus)))
def test_redis_applies_exactly_the_documented_rule(store: RedisTaskStore, current: TaskStatus,
                                                   new: TaskStatus) -> None:  # fmt: skip
    # Given records in every status, at attempt 2
    for attempt in (1, 2, 3):
        task_id = f"{current.value}-{new.value}-{attempt}"
        store.transition(task_id, current, attempt=2)

        # When a write of another status arrives for an earlier, the same or a later attempt
        applied = store.transition(task_id, new, attempt=attempt)

        # Then Redis decides as TaskStatus.may_follow says
        assert applied == new.may_follow(current, attempt=attempt, current_attempt=2)


def test_racing_writes_end_in_the_final_status(store: RedisTaskStore) -> None:
    # Given many tasks whose pending, started and success writes race from three threads
    ids = [f"race-{i}" for i in range(200)]

    def write(status: TaskStatus) -> None:
        for task_id in ids:
            store.transition(task_id, status)

    threads = [threading.Thread(target=write, args=(s,)) for s in (TaskStatus.SUCCESS, TaskStatus.STARTED,
                                                                    TaskStatus.PENDING)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then whatever the order, every record says success
    assert {store.get(task_id).status for task_id in ids} == {TaskStatus.SUCCESS}  # type: ignore[union-attr]
