"""The ledger as a whole, filled by a real worker: lists, statistics, queues, cleanup, retry, dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from aury_tasks import TaskFailed, TaskHandle, TaskManager, TaskRecordNotFound, TaskStateError, TaskStatus

from .events import STATS_FLUSH_TIMEOUT, wait_until

ECHO = "sample_modules.jobs.tasks.echo"


def _ended(handle: TaskHandle) -> None:
    """Wait for ``handle`` to end, however it ends."""
    with contextlib.suppress(TaskFailed):
        handle.get_result(timeout=30)


def _fail(producer: TaskManager, tag: str) -> TaskHandle:
    """A task that fails for good at once (PermanentError): status failure, message dead-lettered."""
    handle = producer.get_task("permanent").send(tag)
    with pytest.raises(TaskFailed):
        handle.get_result(timeout=30)
    return handle


def test_list_tasks_filters_and_pages_newest_first(start_worker, producer: TaskManager) -> None:
    # Given 4 echo and 2 add tasks that succeeded, 1 that failed, and 1 waiting on a queue no worker serves
    start_worker("-q", "fixture")

    def spaced(handle: TaskHandle) -> TaskHandle:
        time.sleep(0.003)  # enqueue times are kept in milliseconds: no two sends share one
        return handle

    echoes = [spaced(producer.get_task("echo").send(i)) for i in range(4)]
    between = time.time()
    time.sleep(0.01)
    adds = [spaced(producer.get_task("add").send(i, i)) for i in range(2)]
    failed = spaced(producer.get_task("permanent").send("list"))
    waiting = spaced(producer.get_task("on_other_queue").send("list"))
    for handle in [*echoes, *adds, failed]:
        _ended(handle)
    sent = [*echoes, *adds, failed, waiting]

    # Then the whole list is every task, newest first, in pages
    whole = producer.list_tasks()
    assert whole.total == 8
    assert {record.id for record in whole.items} == {handle.id for handle in sent}
    enqueued_ms = [int(record.enqueued_at * 1000) for record in whole.items]
    assert enqueued_ms == sorted(enqueued_ms, reverse=True)  # ordered to the millisecond
    assert [record.id for record in whole.items] == [handle.id for handle in reversed(sent)]
    pages = [producer.list_tasks(page=page, page_size=3) for page in (1, 2, 3, 4)]
    assert [[r.id for r in page.items] for page in pages] == [
        [r.id for r in whole.items[0:3]],
        [r.id for r in whole.items[3:6]],
        [r.id for r in whole.items[6:8]],
        [],
    ]
    assert {(page.total, page.pages) for page in pages} == {(8, 3)}

    # And each filter, alone or combined, gives exactly its tasks
    def ids(**filters: object) -> set[str]:
        page = producer.list_tasks(page_size=100, **filters)
        assert page.total == len(page.items)
        on_the_loop = asyncio.run(producer.list_tasks_async(page_size=100, **filters))  # type: ignore[arg-type]
        assert [r.id for r in on_the_loop.items] == [r.id for r in page.items]
        assert on_the_loop.total == page.total
        return {record.id for record in page.items}

    assert ids(status="success") == {h.id for h in [*echoes, *adds]}
    assert ids(status=TaskStatus.FAILURE) == {failed.id}
    assert ids(status="pending") == {waiting.id}
    assert ids(queue="other") == {waiting.id}
    assert ids(queue="fixture") == {h.id for h in [*echoes, *adds, failed]}
    assert ids(task_name=ECHO) == {h.id for h in echoes}
    assert ids(task_name=ECHO, queue="fixture") == {h.id for h in echoes}
    assert ids(task_name=ECHO, queue="other") == set()
    assert ids(status="success", queue="fixture") == {h.id for h in [*echoes, *adds]}
    assert ids(status="success", task_name=ECHO, queue="fixture") == {h.id for h in echoes}
    assert ids(since=between) == {h.id for h in [*adds, failed, waiting]}
    assert ids(until=between) == {h.id for h in echoes}
    assert ids(status="success", since=between) == {h.id for h in adds}


def test_statistics_count_what_ended_in_the_window(start_worker, producer: TaskManager) -> None:
    # Given 3 tasks that succeeded and 1 that failed in the last minute
    start_worker("-q", "fixture")
    for i in range(3):
        assert producer.get_task("echo").send(i).get_result(timeout=30) == i
    _fail(producer, "stats")

    # Then the default window (the last 24 hours) counts them all (once the worker wrote its
    # counts: at most a second later), with durations
    stats = wait_until(lambda: (s := producer.statistics()).total == 4 and s, timeout=STATS_FLUSH_TIMEOUT,
                       what="the worker's statistics")  # fmt: skip
    assert (stats.total, stats.succeeded, stats.failed, stats.cancelled, stats.dead) == (4, 3, 1, 0, 0)
    assert stats.success_rate == pytest.approx(0.75)
    assert stats.average_duration is not None and 0 < stats.average_duration < 5
    assert stats.p50_duration is not None and stats.p95_duration is not None
    assert stats.p50_duration <= stats.p95_duration

    # And a queue's or a task's window counts only theirs
    assert producer.statistics(queue="fixture").total == 4
    assert producer.statistics(queue="other").total == 0
    by_task = producer.statistics(task_name=ECHO)
    assert (by_task.total, by_task.succeeded) == (3, 3)

    # And a window that ended before they ran counts nothing
    now = time.time()
    empty = producer.statistics(now - 3 * 3600, now - 2 * 3600)
    assert (empty.total, empty.average_duration, empty.p50_duration) == (0, None, None)

    # And a window of decades counts the same, reading only the buckets that can exist
    hgetall_before = _calls(producer, "hgetall")
    decades = producer.statistics(946_684_800, now + 30 * 365 * 86400)
    assert (decades.total, decades.succeeded, decades.failed) == (4, 3, 1)
    assert _calls(producer, "hgetall") - hgetall_before < 7 * 24 + 2 * 60 + 10


def _calls(producer: TaskManager, command: str) -> int:
    """How many times the ledger's Redis has run ``command``."""
    stats = producer.store.client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def test_queue_stats_and_workers_show_the_system_now(start_worker, producer: TaskManager) -> None:
    # Given a worker on "fixture" that ran one task, one that failed, and two tasks waiting on "other"
    start_worker("-q", "fixture")
    assert producer.get_task("echo").send("x").get_result(timeout=30) == "x"
    _fail(producer, "queues")
    for tag in ("a", "b"):
        producer.get_task("on_other_queue").send(tag)

    # Then the workers and the queues say so
    workers = wait_until(producer.workers, timeout=10, what="a worker heartbeat")
    assert [worker.queues for worker in workers] == [["fixture"]]
    fixture = producer.queue_stats("fixture")
    assert (fixture.pending, fixture.running, fixture.succeeded, fixture.failed) == (0, 0, 1, 1)
    assert (fixture.dead, fixture.workers) == (1, 1)
    other = producer.queue_stats("other")
    assert (other.pending, other.succeeded, other.workers) == (2, 0, 0)
    assert {queue.queue_name for queue in producer.queues()} >= {"fixture", "other"}


def test_cleanup_deletes_ended_records_and_keeps_the_others(start_worker, producer: TaskManager) -> None:
    # Given two tasks that ended and one still waiting
    start_worker("-q", "fixture")
    ended = [producer.get_task("echo").send(i) for i in range(2)]
    for handle in ended:
        _ended(handle)
    waiting = producer.get_task("on_other_queue").send("kept")

    # When records of tasks that ended over an hour ago are cleaned up, nothing goes
    assert producer.cleanup(3600) == 0

    # When every ended record is cleaned up
    assert producer.cleanup(0) == 2

    # Then the ended ones are gone from the records and the lists, the waiting one stays
    for handle in ended:
        with pytest.raises(TaskRecordNotFound):
            handle.status()
    assert waiting.status() is TaskStatus.PENDING
    assert [record.id for record in producer.list_tasks().items] == [waiting.id]
    assert producer.list_tasks(status="success").total == 0


def test_a_manual_retry_runs_the_task_again_linked_to_the_old_one(
    start_worker, producer: TaskManager
) -> None:
    # Given a task that failed for good, its message in the dead letters
    start_worker("-q", "fixture")
    old = _fail(producer, "again")
    dead_letters = producer.dead_letters("fixture")
    wait_until(lambda: len(dead_letters) == 1, timeout=10, what="the dead letter")

    # When it is retried by hand
    new = producer.retry(old.id)

    # Then a new task with a new id runs the same arguments, and the two records point at each other
    assert new.id != old.id
    with pytest.raises(TaskFailed) as caught:
        new.get_result(timeout=30)
    assert "cannot ever work again" in caught.value.error_message
    assert new.record().retry_of == old.id
    assert old.record().retried_by == new.id
    assert new.record().args == ["again"]

    # And the old dead letter is gone (the new failure left its own)
    assert [letter.task_id for letter in dead_letters.list()] == [new.id]

    # And a task that succeeded cannot be retried
    done = producer.get_task("echo").send(1)
    assert done.get_result(timeout=30) == 1
    with pytest.raises(TaskStateError, match="success"):
        producer.retry(done.id)


def test_dead_letters_after_max_retries_are_listed_requeued_and_purged(
    start_worker, producer: TaskManager
) -> None:
    # Given two tasks that failed on every retry
    start_worker("-q", "fixture")
    first, second = (producer.get_task("always_fails").send(tag) for tag in ("first", "second"))
    for handle in (first, second):
        with pytest.raises(TaskFailed):
            handle.get_result(timeout=30)
    dead_letters = producer.dead_letters("fixture")
    wait_until(lambda: len(dead_letters) == 2, timeout=10, what="two dead letters")

    # Then both are listed, newest first, with their arguments and the error from the ledger
    letters = dead_letters.list()
    assert {letter.task_id for letter in letters} == {first.id, second.id}
    assert letters[0].dead_at >= letters[1].dead_at
    shown = dead_letters.get(first.id)
    assert (shown.task_name, shown.args, shown.status) == (
        "sample_modules.jobs.tasks.always_fails",
        ["first"],
        "failure",
    )
    assert shown.error_type and shown.error_message
    assert first.record().attempt == 3  # the first run and both retries

    # When one is requeued
    requeued = dead_letters.requeue([first.id])

    # Then it runs again as a new, linked task, and leaves the dead letters
    assert list(requeued) == [first.id]
    again = requeued[first.id]
    assert again.record().retry_of == first.id
    assert [letter.task_id for letter in dead_letters.list()] == [second.id]
    with pytest.raises(TaskFailed):
        again.get_result(timeout=30)

    # When the dead letters are purged, none is left (and an unknown one is an error)
    wait_until(lambda: len(dead_letters) == 2, timeout=10, what="the requeued task's own dead letter")
    assert dead_letters.purge() == 2
    assert len(dead_letters) == 0 and dead_letters.list() == []
    with pytest.raises(TaskRecordNotFound):
        dead_letters.get(second.id)
