"""Per-queue concurrency on a real Redis and a real ``aum worker -q cpu:1,io:8``.

The fixture tasks (``tests/fixtures/queue_limit_modules``) record when they start and end and how
many runs of their queue were running when they started; a test checks the limits against those.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from conftest import ROOT, WorkerProcess, import_fixture_modules

from aury_tasks import TaskManager
from aury_tasks.core import keys

from .events import EventLog, wait_until

pytestmark = pytest.mark.timeout(60)

MODULES = ROOT / "tests" / "fixtures" / "queue_limit_modules"


@pytest.fixture
def tasks(producer: TaskManager) -> Any:
    """The fixture tasks, imported into the producer."""
    import_fixture_modules(MODULES)
    from queue_limit_modules.limits import tasks  # type: ignore[import-not-found]

    return tasks


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The most runs whose ``[start, end]`` intervals overlap at one moment."""
    edges = sorted([(run["start"], 1) for run in runs] + [(run["end"], -1) for run in runs])
    running = peak = 0
    for _, step in edges:  # at a tie an end (-1) sorts first: touching intervals do not overlap
        running += step
        peak = max(peak, running)
    return peak


def held_messages(client: redis.Redis) -> int:
    """Messages fetched by some worker and not yet acknowledged, over every queue."""
    pattern = f"{keys.DEFAULT.prefix}:__acks__.*"
    return sum(int(client.scard(key)) for key in client.scan_iter(match=pattern))


def test_a_limited_queue_never_runs_two_at_once_while_the_other_queue_flows(
    tasks: Any, start_worker: Callable[..., WorkerProcess], events: EventLog
) -> None:
    # Given a backlog of slow cpu tasks, sent first, then io tasks
    for n in range(8):
        tasks.crunch.send(n, 0.4)
    for n in range(24):
        tasks.fetch.send(n, 0.3)

    # When one worker process serves cpu with a limit of 1 and io with a limit of 8
    worker = start_worker("-q", "cpu:1,io:8", modules=MODULES)

    # Then it says so when it starts
    line = worker.wait_for_line("queues: ")
    assert "queues: cpu (limit 1, prefetch 4), io (limit 8, prefetch 32);" in line, line
    assert "1 process(es) x 9 thread(s) (each queue has a limit)" in line, line
    # ... and every task runs, once
    cpu = events.wait_for(8, "cpu", timeout=20)
    io = events.wait_for(24, "io", timeout=20)
    assert sorted(run["n"] for run in cpu) == list(range(8))
    assert sorted(run["n"] for run in io) == list(range(24))
    # ... never two cpu tasks at once, as the worker's clock and the counter both say
    assert most_at_once(cpu) == 1, cpu
    assert max(run["running"] for run in cpu) == 1, cpu
    # ... while several io tasks ran together, during the cpu backlog (not after it)
    assert most_at_once(io) >= 4, io
    cpu_end = max(run["end"] for run in cpu)
    assert sum(run["end"] < cpu_end for run in io) >= 12, (cpu_end, io)
    assert len(events.all()) == 32


def test_aum_run_takes_limits_and_the_queues_without_one_share_the_threads(
    tasks: Any, start_aum: Callable[..., WorkerProcess], events: EventLog
) -> None:
    # Given cpu and default tasks
    for n in range(4):
        tasks.crunch.send(n, 0.3)
    for n in range(6):
        tasks.chore.send(n, 0.3)

    # When `aum run` serves cpu with a limit of 1 and default on its 3 shared threads
    run = start_aum("run", "--modules", str(MODULES), "-q", "cpu:1,default", "-c", "3")

    # Then it says so, and every task runs once, never two cpu tasks at once, default ones together
    line = run.wait_for_line("queues: ")
    said = "queues: cpu (limit 1, prefetch 4), default; 1 process(es) x 4 thread(s): 3 shared, prefetch 12"
    assert said in line, line
    cpu = events.wait_for(4, "cpu", timeout=20)
    chores = events.wait_for(6, "default", timeout=20)
    assert sorted(r["n"] for r in cpu) == list(range(4)) and sorted(r["n"] for r in chores) == list(range(6))
    assert most_at_once(cpu) == 1, cpu
    assert 2 <= most_at_once(chores) <= 3, chores


def test_sigterm_gives_back_what_a_limited_queue_prefetched_and_loses_none(
    tasks: Any, start_worker: Callable[..., WorkerProcess], events: EventLog, redis_client: redis.Redis
) -> None:
    # Given a worker whose cpu lane (limit 1, prefetch 4) is busy and holds waiting cpu tasks
    worker = start_worker("-q", "cpu:1,io:2", modules=MODULES)
    tasks.crunch.send(0, 1.5)
    wait_until(lambda: redis_client.get("test:running:cpu") == "1", timeout=10, what="the first cpu task")
    for n in range(1, 7):
        tasks.crunch.send(n, 0.05)
    wait_until(lambda: held_messages(redis_client) >= 3, timeout=10, what="the cpu lane to prefetch")

    # When it gets SIGTERM
    worker.process.send_signal(signal.SIGTERM)

    # Then it exits 0 after the running task, and nothing is held any more: what did not run is back
    assert worker.wait() == 0, worker.output()
    assert held_messages(redis_client) == 0
    ran = [run["n"] for run in events.all("cpu")]
    assert 0 in ran
    assert redis_client.llen(keys.DEFAULT.broker_queue("cpu")) + len(ran) == 7

    # And a new worker runs each of the rest once
    start_worker("-q", "cpu:1", modules=MODULES)
    done = events.wait_for(7, "cpu", timeout=20)
    assert Counter(run["n"] for run in done) == Counter(range(7))
