"""Two applications on one Redis, each under its own ``TASK_KEY_PREFIX``: neither sees the other.

Two real ``aum worker`` processes run side by side on the embedded test server, one with
``TASK_KEY_PREFIX=alpha`` and one with ``beta``; a producer of each sends tasks and adds a
schedule. Each side's tasks are run by its own worker only, and its ledger (listing, counts,
statistics), its schedules, its workers and ``aum doctor`` show only its own. Every key written
is under one of the two prefixes: nothing under the default ``aury:``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from conftest import FIXTURE_MODULES, WorkerProcess, import_fixture_modules

from aury_tasks import SchedulerManager, TaskHandle, TaskManager, TaskRecordNotFound, TaskStatus
from aury_tasks.config.settings import get_settings

from .events import STATS_FLUSH_TIMEOUT, wait_until

PREFIXES = ("alpha", "beta")
#: Tasks each side sends (different counts, so that a count of the other side's shows).
SENT = {"alpha": 3, "beta": 2}


def _switch_to(prefix: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> TaskManager:
    """The default TaskManager (with the fixture tasks), now of the application under ``prefix``."""
    monkeypatch.setenv("TASK_BROKER_URL", redis_url)
    monkeypatch.setenv("TASK_KEY_PREFIX", prefix)
    get_settings.cache_clear()
    TaskManager.reset_instance()
    SchedulerManager.reset_instance()
    tm = TaskManager.get_instance()
    import_fixture_modules()
    return tm


def _pid(worker: str) -> int:
    """The pid of a record's ``host:pid`` worker."""
    return int(worker.rpartition(":")[2])


def test_two_prefixes_on_one_redis_see_only_their_own_tasks_schedules_workers_and_statistics(
    redis_url: str,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    start_worker: Callable[..., WorkerProcess],
    start_aum: Callable[..., WorkerProcess],
) -> None:
    # Given a worker under each prefix, side by side on one Redis
    for prefix in PREFIXES:
        start_worker("-q", "fixture", env={"TASK_KEY_PREFIX": prefix})

    # When a producer of each sends its tasks and adds a schedule
    sent: dict[str, list[TaskHandle]] = {}
    for prefix in PREFIXES:
        tm = _switch_to(prefix, redis_url, monkeypatch)
        runs = tm.get_task("runs")
        tags = [f"{prefix}-{index}" for index in range(SENT[prefix])]
        sent[prefix] = [runs.send(tag) for tag in tags]
        assert [handle.get_result(timeout=20) for handle in sent[prefix]] == tags
        SchedulerManager.get_instance().add_job(
            runs, interval=3600, id=f"{prefix}-job", kwargs={"tag": prefix}
        )

    # Then each side sees only its own
    pids: dict[str, set[int]] = {}
    for prefix in PREFIXES:
        tm = _switch_to(prefix, redis_url, monkeypatch)
        ids = {handle.id for handle in sent[prefix]}
        page = tm.list_tasks(page_size=100)
        assert {record.id for record in page.items} == ids
        assert page.total == SENT[prefix]
        assert tm.list_tasks(status=TaskStatus.SUCCESS).total == SENT[prefix]
        wait_until(lambda tm=tm, n=SENT[prefix]: tm.statistics().succeeded == n, timeout=STATS_FLUSH_TIMEOUT,
                   what="the statistics the worker writes once a second")  # fmt: skip
        assert tm.queue_stats("fixture").succeeded == SENT[prefix]
        assert tm.store.queues() == {"fixture"}
        assert [job.job.id for job in SchedulerManager.get_instance().list_jobs()] == [f"{prefix}-job"]
        workers = tm.workers()
        assert len(workers) == 1  # its own worker process only
        pids[prefix] = {worker.pid for worker in workers}
        # ... and its tasks were run by its own worker
        assert {_pid(record.worker) for record in page.items} == pids[prefix]
        # ... and a task of the other side is unknown here
        other = sent[next(p for p in PREFIXES if p != prefix)][0]
        with pytest.raises(TaskRecordNotFound):
            tm.task_record(other.id)
    assert pids["alpha"].isdisjoint(pids["beta"])

    # And aum doctor of each prefix names its own prefix, schedule and worker only
    for prefix in PREFIXES:
        other = next(p for p in PREFIXES if p != prefix)
        doctor = start_aum("doctor", "--modules", str(FIXTURE_MODULES), env={"TASK_KEY_PREFIX": prefix})
        doctor.wait(timeout=60)
        output = doctor.output()
        assert f"keys under {prefix}:" in output
        assert f"on {prefix}:*" in output
        assert f"{prefix}-job" in output and f"{other}-job" not in output
        assert "1 process(es)" in output, output

    # And every key in the server is under one of the two prefixes (or the fixtures' test: keys)
    stray = [key for key in redis_client.scan_iter() if not key.startswith(("alpha:", "beta:", "test:"))]
    assert stray == []
    assert any(key.startswith("alpha:ledger:") for key in redis_client.scan_iter("alpha:*"))
    assert redis_client.exists("beta:scheduler:jobs") and redis_client.exists("alpha:__heartbeats__")


def test_a_task_sent_under_one_prefix_waits_for_a_worker_of_that_prefix(
    redis_url: str,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # Given a worker under alpha only
    start_worker("-q", "fixture", env={"TASK_KEY_PREFIX": "alpha"})
    # When beta sends a task
    beta = _switch_to("beta", redis_url, monkeypatch)
    handle = beta.get_task("runs").send("beta-waits")
    # Then alpha's worker does not run it: it waits in beta's queue
    with pytest.raises(TimeoutError):
        handle.get_result(timeout=2)
    assert beta.queue_stats("fixture").pending == 1
    assert redis_client.llen("beta:fixture") == 1 and not redis_client.exists("alpha:fixture")
    # ... until a worker of beta starts and runs it
    start_worker("-q", "fixture", env={"TASK_KEY_PREFIX": "beta"})
    assert handle.get_result(timeout=20) == "beta-waits"
