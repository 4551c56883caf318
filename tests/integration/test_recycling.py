"""Worker recycling on a real Redis and a real ``aum worker --max-tasks-per-child N``.

The fixture tasks (``tests/fixtures/recycling_modules``) push ``"<n> <pid>"`` to a Redis list
once per run, so a test sees which task ran, how many times, and in which worker process.
"""

from __future__ import annotations

import re
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from conftest import ROOT, WorkerProcess, import_fixture_modules

from aury_tasks import TaskManager
from aury_tasks.core import keys

from .events import wait_until

pytestmark = pytest.mark.timeout(180)

MODULES = ROOT / "tests" / "fixtures" / "recycling_modules"
RUNS = "test:recycle:runs"
RECYCLED = re.compile(r"worker process (\d+) recycled after (\d+) tasks \((.*)\); started (\d+)")


@pytest.fixture
def tasks(producer: TaskManager) -> Any:
    """The fixture tasks, imported into the producer."""
    import_fixture_modules(MODULES)
    from recycling_modules.recycle import tasks  # type: ignore[import-not-found]

    return tasks


def settled(client: redis.Redis, count: int) -> bool:
    """Whether ``count`` runs are recorded and no message waits in the queue or in a worker's hands."""
    pattern = f"{keys.DEFAULT.prefix}:__acks__.*"
    held = sum(int(client.scard(key)) for key in client.scan_iter(match=pattern))
    queued = int(client.llen(f"{keys.DEFAULT.prefix}:recycle"))
    return int(client.llen(RUNS)) >= count and held == 0 and queued == 0


def runs(client: redis.Redis) -> list[tuple[int, int]]:
    """The recorded runs, as ``(task number, worker pid)``."""
    return [(int(n), int(pid)) for n, pid in (item.split() for item in client.lrange(RUNS, 0, -1))]


def recycled_lines(worker: WorkerProcess) -> list[re.Match[str]]:
    return [match for line in list(worker.lines) if (match := RECYCLED.search(line))]


def run_recycling(
    tasks: Any, start_worker: Callable[..., WorkerProcess], client: redis.Redis, *, count: int, limit: int
) -> None:
    # Given a worker of 4 threads whose process is replaced after `limit` tasks
    worker = start_worker("-c", "4", "--max-tasks-per-child", str(limit), modules=MODULES)

    # When `count` tasks are sent
    tasks.record.send_many([{"n": n} for n in range(count)])

    # Then every one runs exactly once
    wait_until(lambda: settled(client, count), timeout=150, what=f"{count} runs, nothing held")
    done = runs(client)
    assert Counter(n for n, _ in done) == Counter(range(count)), worker.output()
    # in many worker processes, each replaced by the supervisor with a line that says so
    expected = count // limit // 2
    assert len({pid for _, pid in done}) >= expected, worker.output()
    recycled = recycled_lines(worker)
    assert len(recycled) >= expected, worker.output()
    assert all(match[3] == f"max-tasks-per-child {limit}" and int(match[2]) >= limit for match in recycled)
    # and the worker still runs, and stops cleanly on SIGTERM
    assert worker.process.poll() is None, worker.output()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, worker.output()
    assert len(runs(client)) == count


def test_a_recycling_worker_runs_every_task_once_over_many_processes(
    tasks: Any, start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    run_recycling(tasks, start_worker, redis_client, count=300, limit=30)


@pytest.mark.slow
def test_a_recycling_worker_runs_1000_tasks_once_with_max_tasks_per_child_50(
    tasks: Any, start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    run_recycling(tasks, start_worker, redis_client, count=1000, limit=50)


def test_a_worker_process_over_its_memory_limit_is_replaced(
    tasks: Any, start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    # Given a worker whose processes are replaced past 120 MiB (a fresh one uses about half)
    limit = 120
    worker = start_worker("-c", "2", "--max-memory-per-child", str(limit), modules=MODULES)

    # When tasks that each keep 10 MiB for good are sent
    tasks.hoard.send_many([{"n": n, "mib": 10} for n in range(30)])

    # Then every one runs exactly once, and a process was replaced for its memory
    wait_until(lambda: settled(redis_client, 30), timeout=60, what="30 runs, nothing held")
    assert Counter(n for n, _ in runs(redis_client)) == Counter(range(30)), worker.output()
    recycled = recycled_lines(worker)
    assert recycled, worker.output()
    assert all(match[3].startswith(f"max-memory-per-child {limit} MiB, it used ") for match in recycled)
    assert len({pid for _, pid in runs(redis_client)}) >= 2
    assert worker.stop() == 0, worker.output()


def test_sigterm_while_a_process_recycles_stops_the_worker_with_exit_0(
    tasks: Any, start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    # Given a worker process replaced after each task, running a slow task
    worker = start_worker("-c", "2", "--max-tasks-per-child", "1", modules=MODULES)
    tasks.nap.send(1, 2.0)
    wait_until(lambda: redis_client.llen("test:recycle:started"), timeout=20, what="the slow task started")
    # that reached its limit with a quick task meanwhile, and waits for the slow one to finish
    tasks.record.send(0)
    worker.wait_for_line("has run 1 tasks: finishing its running tasks")

    # When aum worker gets SIGTERM
    worker.process.send_signal(signal.SIGTERM)

    # Then the slow task finishes, nothing takes the process's place, and the exit code is 0
    assert worker.wait(timeout=30) == 0, worker.output()
    assert sorted(n for n, _ in runs(redis_client)) == [0, 1]
    assert recycled_lines(worker) == []
    assert settled(redis_client, 2)


def test_without_limits_no_recycling_runs(
    tasks: Any, start_worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    # Given a worker with neither limit (TASK_MAX_TASKS_PER_CHILD=0 given explicitly)
    worker = start_worker("-c", "2", env={"TASK_MAX_TASKS_PER_CHILD": "0"}, modules=MODULES)

    # When tasks run
    tasks.record.send_many([{"n": n} for n in range(30)])

    # Then one process ran them all and nothing was recycled
    wait_until(lambda: settled(redis_client, 30), timeout=30, what="30 runs, nothing held")
    assert len({pid for _, pid in runs(redis_client)}) == 1
    assert recycled_lines(worker) == []
    assert worker.stop() == 0, worker.output()


def test_every_message_processed_counts_once_whatever_its_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    from aury_tasks.worker import recycling

    monkeypatch.setattr(recycling, "_recycling", False)
    monkeypatch.setattr(recycling, "_stopped", False)
    # Given a recycler after 3 tasks
    stops: list[int] = []
    recycler = recycling.Recycler(max_tasks=3, max_memory_mib=0, stop=lambda: stops.append(recycler.tasks))

    # When a message succeeds, one fails (to be retried), one is skipped, and one more finishes
    recycler.after_process_message(None, None, result=1)  # type: ignore[arg-type]
    recycler.after_process_message(None, None, exception=RuntimeError("retry me"))  # type: ignore[arg-type]
    assert stops == []
    recycler.after_skip_message(None, None)  # type: ignore[arg-type]
    recycler.after_process_message(None, None, result=2)  # type: ignore[arg-type]

    # Then the process stops once, at the third, and will exit to be replaced
    assert stops == [3]
    assert recycler.tasks == 4
    assert recycling._recycling
    # unless an operator's stop came meanwhile
    recycling.operator_stop()
    assert not recycling._recycling
