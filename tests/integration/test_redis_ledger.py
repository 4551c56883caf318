"""The Redis ledger store applies status writes atomically and forward-only, on a real Redis."""

from __future__ import annotations

import itertools
import threading

import pytest
import redis

from aury_tasks.core import keys
from aury_tasks.core.status import TaskStatus
from aury_tasks.ledger import RedisLedger


@pytest.fixture
def store(redis_url: str) -> RedisLedger:
    return RedisLedger(redis.Redis.from_url(redis_url, decode_responses=True), keys.DEFAULT, ttl=60)


def test_a_record_follows_a_task_and_keeps_its_fields(store: RedisLedger) -> None:
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


def test_a_late_pending_write_does_not_overwrite_success(store: RedisLedger) -> None:
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


def test_the_status_index_moves_with_the_record(store: RedisLedger, redis_client: redis.Redis) -> None:
    store.transition("t3", TaskStatus.PENDING)
    assert redis_client.zrange(keys.DEFAULT.status_index("pending"), 0, -1) == ["t3"]

    store.transition("t3", TaskStatus.STARTED)

    assert redis_client.zrange(keys.DEFAULT.status_index("pending"), 0, -1) == []
    assert redis_client.zrange(keys.DEFAULT.status_index("started"), 0, -1) == ["t3"]


def test_every_record_expires(store: RedisLedger, redis_client: redis.Redis) -> None:
    store.transition("t4", TaskStatus.PENDING)
    assert 0 < redis_client.pttl(keys.DEFAULT.task_record("t4")) <= 60_000


def test_every_statistics_bucket_expires(store: RedisLedger, redis_client: redis.Redis) -> None:
    # Given tasks of two queues ending in two statuses, the second of each status after the first
    ends = [("a", TaskStatus.SUCCESS), ("a", TaskStatus.SUCCESS), ("b", TaskStatus.FAILURE),
            ("a", TaskStatus.FAILURE)]  # fmt: skip
    for number, (queue, status) in enumerate(ends):
        task_id = f"s{number}"
        store.transition(task_id, TaskStatus.PENDING, queue_name=queue, task_name="m.t")
        store.transition(task_id, status, finished_at=1.0, duration=0.01)

    # Then every counter bucket (minute and hour, all / queue / task) has a lifetime
    buckets = list(redis_client.scan_iter(match=f"{keys.DEFAULT.ledger_prefix}stats:*"))
    assert len(buckets) == 2 * 4  # (m, h) x (all, q:a, q:b, t:m.t)
    assert all(redis_client.ttl(bucket) > 0 for bucket in buckets)


def test_an_unknown_id_has_no_record(store: RedisLedger) -> None:
    assert store.get("never-sent") is None


@pytest.mark.parametrize(("current", "new"), list(itertools.product(TaskStatus, TaskStatus)))
def test_redis_applies_exactly_the_documented_rule(store: RedisLedger, current: TaskStatus,
                                                   new: TaskStatus) -> None:  # fmt: skip
    # Given records in every status, at attempt 2
    for attempt in (1, 2, 3):
        task_id = f"{current.value}-{new.value}-{attempt}"
        store.transition(task_id, current, attempt=2)

        # When a write of another status arrives for an earlier, the same or a later attempt
        applied = store.transition(task_id, new, attempt=attempt)

        # Then Redis decides as TaskStatus.may_follow says
        assert applied == new.may_follow(current, attempt=attempt, current_attempt=2)


def test_racing_writes_end_in_the_final_status(store: RedisLedger) -> None:
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


def test_status_queue_and_task_together_list_exactly_their_records(store: RedisLedger) -> None:
    # Given 1,300 records of one task on two queues in three statuses, enqueued in only three
    # distinct milliseconds (so equal scores straddle the store's batches), and another task
    from aury_tasks.redis.scripts import run_pipelined

    writes, expected = [], {}
    for n in range(1300):
        task_id = f"id-{n:04d}"
        queue = "a" if n % 2 else "b"
        status = (TaskStatus.SUCCESS, TaskStatus.FAILURE, TaskStatus.PENDING)[n % 7 % 3]
        now = 1_700_000_000.0 + n % 3 / 1000
        writes.append(store.transition_write(task_id, TaskStatus.PENDING, task_name="m.t", queue_name=queue,
                                             enqueued_at=now, now=now))  # fmt: skip
        if status is not TaskStatus.PENDING:
            writes.append(store.transition_write(task_id, status, finished_at=now))
        expected[task_id] = (queue, status.value, now)
    writes += [store.transition_write("other", TaskStatus.PENDING, task_name="m.u", queue_name="a")]
    for start in range(0, len(writes), 500):
        run_pipelined(store.client, writes[start : start + 500])

    # When each combination is listed whole, then page by page
    for queue, status in itertools.product("ab", ("success", "failure", "pending")):
        want = {task_id for task_id, (q, s, _) in expected.items() if (q, s) == (queue, status)}
        whole = store.list_tasks(status=status, queue_name=queue, task_name="m.t", page_size=2000)
        paged = [store.list_tasks(status=status, queue_name=queue, task_name="m.t", page=page, page_size=100)
                 for page in range(1, 4)]  # fmt: skip

        # Then exactly those records come, each once, newest first, and the pages split the whole
        ids = [record.id for record in whole.items]
        assert (whole.total, len(ids), set(ids)) == (len(want), len(want), want)
        scores = [expected[task_id][2] for task_id in ids]
        assert scores == sorted(scores, reverse=True)
        assert [record.id for page in paged for record in page.items] == ids[:300]

    # And queue with task name (an index of their own) agrees
    pair = store.list_tasks(queue_name="b", task_name="m.t", page_size=2000)
    assert {r.id for r in pair.items} == {t for t, (q, _, _) in expected.items() if q == "b"}
    assert pair.total == len(pair.items)
