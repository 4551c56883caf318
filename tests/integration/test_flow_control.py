"""Flow control on a real Redis and real workers: rate limits, concurrency limits, unique sends.

The fixture tasks (``tests/fixtures/flow_modules``) record when they start and end; a test
reads those times back and checks the limit against them.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from brokers import QUEUE_SUFFIX_VARIABLE, on_both_brokers
from conftest import ROOT, WorkerProcess, import_fixture_modules

from aury_tasks import LedgerUnavailable, SerializationError, TaskManager, TaskStatus
from aury_tasks.core import keys
from aury_tasks.middleware.limits import ConcurrencyLeases, RateLimit, WindowLimiter, claim_unique

from .events import EventLog, queued_ids

pytestmark = pytest.mark.timeout(120)

MODULES = ROOT / "tests" / "fixtures" / "flow_modules"
EXCLUSIVE = "flow_modules.limits.tasks.exclusive"
HOLDS_SLOT = "flow_modules.limits.tasks.holds_slot"
#: A dead worker is noticed within seconds (maintenance about every second).
FAST_HEARTBEAT = {"TASK_HEARTBEAT_TIMEOUT": "2"}


@pytest.fixture
def limits(producer: TaskManager) -> Any:
    """The flow-control fixture tasks, imported into the producer."""
    import_fixture_modules(MODULES)
    from flow_modules.limits import tasks  # type: ignore[import-not-found]

    return tasks


def start_flow_worker(start_worker: Callable[..., WorkerProcess], *args: str, **kwargs: Any) -> WorkerProcess:
    return start_worker("-q", flow_queue(), "-c", "8", *args, modules=MODULES, **kwargs)


def flow_queue() -> str:
    """The fixture tasks' queue in this test (its own on RabbitMQ: ``brokers.py``)."""
    return "flow" + os.environ.get(QUEUE_SUFFIX_VARIABLE, "")


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The most runs whose ``[start, end]`` intervals overlap at one moment."""
    edges = sorted([(run["start"], 1) for run in runs] + [(run["end"], -1) for run in runs])
    running = peak = 0
    for _, step in edges:  # at a tie an end (-1) sorts first: touching intervals do not overlap
        running += step
        peak = max(peak, running)
    return peak


# Rate limits


def test_a_rate_limit_holds_across_worker_threads_and_defers_without_failing(
    limits: Any, start_worker: Callable[..., WorkerProcess], producer: TaskManager, events: EventLog
) -> None:
    # Given a worker with 8 threads and a task limited to 5 runs a second
    start_flow_worker(start_worker)

    # When 150 are sent at once
    handles = [limits.rated.send(n) for n in range(150)]

    # Then while the backlog drains, the tasks waiting for their turn are pending, never failed
    events.wait_for(20, "rated", timeout=30)
    statuses = Counter(producer.store.status(handle.id) for handle in handles)
    assert set(statuses) <= {TaskStatus.PENDING, TaskStatus.STARTED, TaskStatus.SUCCESS}, statuses
    assert statuses[TaskStatus.PENDING] >= 80, statuses
    # ... and every task runs exactly once in the end
    runs = events.wait_for(150, "rated", timeout=60)
    assert sorted(run["n"] for run in runs) == list(range(150))
    # ... never more than 5 let through in one whole second (the limiter's buckets; a task's first
    # line may come later, in the next second, when the host is loaded and the worker stalls)
    per_second = Counter(int(run["admitted"]) for run in runs)
    assert max(per_second.values()) <= 5, sorted(per_second.items())
    assert all(run["admitted"] <= run["at"] for run in runs)
    # ... and at close to the rate: 80 to 105 in the first 20 seconds
    first = min(run["admitted"] for run in runs)
    assert 80 <= sum(1 for run in runs if run["admitted"] < first + 20) <= 105, sorted(per_second.items())
    # ... each a success at its first attempt: a deferral is not a retry
    for handle in handles:
        record = producer.task_record(handle.id)
        assert (record.status, record.attempt, record.errors) == (TaskStatus.SUCCESS, 1, []), record


def test_the_window_limiter_counts_whole_seconds_of_one_instant(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a limiter of 3 runs per 2 seconds, at a fixed moment
    clock = _FixedClock(1_000_000.25)
    monkeypatch.setattr("aury_tasks.middleware.limits.time", clock)
    limiter = WindowLimiter(redis_client, "test:rate", RateLimit(3, 2))

    # When runs ask in that second, then in the next, then two seconds on
    first_second = [limiter.try_acquire() for _ in range(4)]
    clock.now += 1
    second_second = limiter.try_acquire()
    clock.now += 1
    third_second = [limiter.try_acquire() for _ in range(4)]

    # Then the window (this second and the one before) takes 3 runs
    assert first_second == [True, True, True, False]
    assert second_second is False
    assert third_second == [True, True, True, False]
    assert redis_client.get("test:rate@1000002") == "3"
    assert limiter.seconds_to_next_bucket() == pytest.approx(0.75)


# Concurrency


@pytest.mark.parametrize(("task", "limit", "processes"), [("exclusive", 1, "1"), ("paired", 2, "2")])
@on_both_brokers
def test_a_concurrency_limit_holds_across_threads_and_processes(
    limits: Any,
    start_worker: Callable[..., WorkerProcess],
    producer: TaskManager,
    events: EventLog,
    task: str,
    limit: int,
    processes: str,
) -> None:
    # Given workers with 8 threads per process, and a task that at most `limit` may run at once
    start_flow_worker(start_worker, "-p", processes)

    # When 10 of its runs are sent at once
    handles = [getattr(limits, task).send(n, 0.2) for n in range(10)]

    # Then all complete, each at its first attempt
    assert [handle.get_result(timeout=60) for handle in handles] == list(range(10))
    assert {(h.record().status, h.record().attempt) for h in handles} == {(TaskStatus.SUCCESS, 1)}
    # ... and never more than `limit` ran at once (while that many did run together)
    runs = events.all(task)
    assert sorted(run["n"] for run in runs) == list(range(10))
    assert most_at_once(runs) == limit


def test_a_slot_held_by_a_dead_workers_lease_frees_when_the_lease_ends(
    limits: Any,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
    events: EventLog,
) -> None:
    # Given the one slot of a task held by the lease of a worker that died (never renewed again)
    lease_ends = time.time() + 3
    redis_client.zadd(
        keys.DEFAULT.concurrency_leases(EXCLUSIVE), {"ghost-task:ghost-run": int(lease_ends * 1000)}
    )
    start_flow_worker(start_worker)

    # When runs of the task are sent
    handles = [limits.exclusive.send(n, 0.1) for n in range(3)]

    # Then none starts before the lease has ended, and all complete after, one at a time
    assert [handle.get_result(timeout=30) for handle in handles] == [0, 1, 2]
    runs = events.all("exclusive")
    assert min(run["start"] for run in runs) >= lease_ends
    assert most_at_once(runs) == 1


def test_a_task_redelivered_after_its_worker_was_killed_takes_its_slot_back(
    limits: Any,
    start_worker: Callable[..., WorkerProcess],
    producer: TaskManager,
    redis_client: redis.Redis,
    events: EventLog,
) -> None:
    # Given a worker running the task that holds the one slot, and two more runs waiting for it
    first_worker = start_flow_worker(start_worker, env=FAST_HEARTBEAT)
    holder = limits.holds_slot.send("a")
    events.wait_for(1, "holds_slot_start", tag="a")
    redis_client.rpush("test:release:b", "go")
    redis_client.rpush("test:release:c", "go")
    waiting = [limits.holds_slot.send("b"), limits.holds_slot.send("c")]

    # When that worker is killed (its lease is not given back) and another worker starts
    first_worker.signal_group(signal.SIGKILL)
    assert first_worker.wait() == -signal.SIGKILL
    start_flow_worker(start_worker, env=FAST_HEARTBEAT)

    # Then the killed task is delivered again and takes its own slot back at once ...
    _, again = events.wait_for(2, "holds_slot_start", tag="a", timeout=30)
    assert redis_client.zcard(keys.DEFAULT.concurrency_leases(HOLDS_SLOT)) == 1
    redis_client.rpush("test:release:a", "go")
    # ... and all three complete, the waiting ones after it, one at a time
    assert holder.get_result(timeout=30) == "a"
    assert [handle.get_result(timeout=30) for handle in waiting] == ["b", "c"]
    runs = events.all("holds_slot")
    assert most_at_once(runs) == 1
    (rerun,) = (run for run in runs if run["tag"] == "a")
    assert rerun["start"] == again["start"]
    assert all(run["start"] >= rerun["end"] for run in runs if run["tag"] != "a")
    assert redis_client.zcard(keys.DEFAULT.concurrency_leases(HOLDS_SLOT)) == 0


@pytest.mark.slow
def test_the_slot_of_a_killed_worker_frees_within_the_lease(
    limits: Any,
    start_worker: Callable[..., WorkerProcess],
    producer: TaskManager,
    redis_client: redis.Redis,
    events: EventLog,
) -> None:
    # Given a worker running the task that holds the one slot, whose message will not come back
    # (a single delivery allowed: the killed one is dead-lettered)
    env = {**FAST_HEARTBEAT, "TASK_MAX_DELIVERIES": "1"}
    first_worker = start_flow_worker(start_worker, env=env)
    holder = limits.holds_slot.send("a")
    events.wait_for(1, "holds_slot_start", tag="a")

    # When that worker is killed, two more runs are sent, and another worker starts
    first_worker.signal_group(signal.SIGKILL)
    killed_at = time.time()
    assert first_worker.wait() == -signal.SIGKILL
    redis_client.rpush("test:release:b", "go")
    redis_client.rpush("test:release:c", "go")
    waiting = [limits.holds_slot.send("b"), limits.holds_slot.send("c")]
    start_flow_worker(start_worker, env=env)

    # Then the killed task is dead, and the slot it held frees once its lease ends (30 s after
    # the last renewal, 5 s at most before the kill): the waiting runs complete, one at a time
    assert [handle.get_result(timeout=60) for handle in waiting] == ["b", "c"]
    assert holder.status() is TaskStatus.DEAD
    runs = events.all("holds_slot")
    assert {run["tag"] for run in runs} == {"b", "c"}
    assert min(run["start"] for run in runs) >= killed_at + 20
    assert most_at_once(runs) == 1


def test_leases_admit_up_to_the_limit_and_free_on_release_or_expiry(redis_client: redis.Redis) -> None:
    # Given leases of a task limited to 2 runs at once
    leases = ConcurrencyLeases(redis_client, keys.DEFAULT, lease_seconds=30)
    key = keys.DEFAULT.concurrency_leases("t")

    # When three runs ask, then one gives its slot back
    asked = [leases.acquire("t", run, 2) for run in ("r1", "r2", "r3")]
    leases.release("t", "r1")

    # Then two got a slot, and the freed one goes to the next run
    assert asked == [True, True, False]
    assert leases.acquire("t", "r3", 2) is True
    assert leases.acquire("t", "r4", 2) is False
    # ... a run asking again for the slot it holds (redelivered) keeps it
    assert leases.acquire("t", "r2", 2) is True
    # ... and a lease that ended (its worker dead) frees its slot at the next ask
    redis_client.zadd(key, {"r2": 1})
    assert leases.acquire("t", "r4", 2) is True
    assert set(redis_client.zrange(key, 0, -1)) == {"r3", "r4"}


def test_renewing_extends_the_leases_held_and_names_those_lost(redis_client: redis.Redis) -> None:
    # Given two runs holding leases that end soon
    leases = ConcurrencyLeases(redis_client, keys.DEFAULT, lease_seconds=30)
    key = keys.DEFAULT.concurrency_leases("t")
    redis_client.zadd(key, {"r1": 1_000, "r2": 1_000})
    redis_client.zrem(key, "r2")  # r2's lease ended and its slot went to another run

    # When this process renews what it holds
    lost = leases.renew([("t", "r1"), ("t", "r2")])

    # Then r1 holds 30 s more, and r2 is reported lost, not taken back
    assert lost == ["r2"]
    assert redis_client.zscore(key, "r1") == pytest.approx((time.time() + 30) * 1000, abs=5_000)
    assert redis_client.zscore(key, "r2") is None
    assert 0 < redis_client.pttl(key) <= 30_000


# Unique sends


def test_identical_sends_from_many_threads_enqueue_one_task(
    limits: Any,
    start_worker: Callable[..., WorkerProcess],
    redis_client: redis.Redis,
    events: EventLog,
) -> None:
    # Given a unique_for task and 5 threads ready to send it
    barrier = threading.Barrier(5)
    handles: list[Any] = []
    lock = threading.Lock()

    def send_ten() -> None:
        barrier.wait()
        for _ in range(10):
            handle = limits.unique_report.send("acme")
            with lock:
                handles.append(handle)

    # When they send the identical task 50 times at once
    threads = [threading.Thread(target=send_ten) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then every handle is the same task, and one message was enqueued
    assert len(handles) == 50
    assert len({handle.id for handle in handles}) == 1
    assert queued_ids(redis_client, "flow") == [handles[0].id]
    # ... and it runs once
    start_flow_worker(start_worker)
    assert handles[0].get_result(timeout=30) == "acme/today"
    assert len(events.all("unique_report")) == 1


def test_what_makes_sends_identical(limits: Any, redis_client: redis.Redis) -> None:
    # Given a unique_for task over all its arguments, and one over `user_id` only (no worker runs them)
    report, sync = limits.unique_report, limits.unique_sync

    # When sent with the same arguments spelt differently, and with others
    first = report.send("acme")
    same = [
        report.send(account="acme"),
        report.send("acme", "today"),
        report.send_with_options(args=("acme",)),
    ]
    other_account, other_day = report.send("globex"), report.send("acme", day="yesterday")
    signup, login, other_user = sync.send("u1", "in"), sync.send("u1", reason="out"), sync.send("u2", "in")

    # Then the same arguments are the same task; other arguments are other tasks
    assert {handle.id for handle in same} == {first.id}
    assert len({first.id, other_account.id, other_day.id}) == 3
    # ... and with unique_key=["user_id"], only the user counts
    assert login.id == signup.id != other_user.id
    assert len(queued_ids(redis_client, "flow")) == 5


@on_both_brokers
def test_a_delayed_task_is_pending_work_too(limits: Any) -> None:
    # Given a unique task sent to run in a minute
    later = limits.unique_report.send_with_options(args=("acme",), delay=60)
    assert later.status() is TaskStatus.SCHEDULED

    # When the same is sent to run now, Then it is that task
    assert limits.unique_report.send("acme").id == later.id


@on_both_brokers
def test_once_the_task_has_ended_an_identical_send_is_new_work(
    limits: Any, start_worker: Callable[..., WorkerProcess], events: EventLog
) -> None:
    # Given a unique task that ran and succeeded
    start_flow_worker(start_worker)
    first = limits.unique_sync.send("u1", "signup")
    assert first.get_result(timeout=30) == "u1"

    # When it is sent again
    second = limits.unique_sync.send("u1", "signup")

    # Then it is a new task, and it runs
    assert second.id != first.id
    assert second.get_result(timeout=30) == "u1"
    assert len(events.all("unique_sync")) == 2


def test_a_send_that_fails_frees_its_unique_key(limits: Any, redis_client: redis.Redis) -> None:
    # Given a unique task sent with an argument that is not JSON
    report = limits.unique_report
    digest = report.uniqueness.digest(("acme",), {"day": {1, 2}})

    # When the send fails
    with pytest.raises(SerializationError):
        report.send("acme", day={1, 2})

    # Then its key is not held: nothing blocks the next send
    assert redis_client.exists(keys.DEFAULT.unique_lock(report.name, digest)) == 0


def test_a_key_held_by_a_task_with_no_record_yet_is_a_send_under_way(redis_client: redis.Redis) -> None:
    # Given a key claimed for a task whose record is not written yet (its send is under way)
    assert claim_unique(redis_client, keys.DEFAULT, "t", "d", "first", 60) is None

    # When another send claims it, Then it is that task
    assert claim_unique(redis_client, keys.DEFAULT, "t", "d", "second", 60) == "first"
    # ... until the task's record is final
    redis_client.hset(keys.DEFAULT.task_record("first"), mapping={"status": "failure", "final": "1"})
    assert claim_unique(redis_client, keys.DEFAULT, "t", "d", "second", 60) is None
    assert redis_client.get(keys.DEFAULT.unique_lock("t", "d")) == "second"
    assert 0 < redis_client.pttl(keys.DEFAULT.unique_lock("t", "d")) <= 60_000


def test_unique_sends_need_the_ledger(limits: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given task state not kept
    monkeypatch.setenv("TASK_TRACK_STATE", "false")
    from aury_tasks.config.settings import get_settings

    get_settings.cache_clear()
    TaskManager.reset_instance()
    import_fixture_modules(MODULES)
    from flow_modules.limits import tasks  # type: ignore[import-not-found]

    # When a unique task is sent, Then the error says what unique_for needs
    with pytest.raises(LedgerUnavailable, match="unique_report is declared with unique_for"):
        tasks.unique_report.send("acme")


class _FixedClock:
    """Stands in for the ``time`` module: ``time()`` is :attr:`now`."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now
