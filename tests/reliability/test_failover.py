"""Scenario 16: SIGKILL of the Redis master under a stream of 10,000 tasks, on a Sentinel deployment.

A master, one replica and three sentinels (``tests/sentinel_redis.py``); a producer (this test,
in a thread) sending 10,000 ``work`` tasks at a steady rate through the ``redis+sentinel://``
URL; an ``aum worker``, an ``aum scheduler`` firing a job every second and an ``aum serve``, all
on that URL. The tasks count themselves in the test's private Redis (``REL_COUNTS_URL``), which
no fault touches. Mid-stream the master is SIGKILLed; once the sentinels promoted the replica,
the old master is started again as the new master's replica (never as a master: no split brain).

Figures: ``sent`` (sends that returned), ``completed``, ``lost`` (sent, never done),
``duplicates``, the pause (the longest gap between two completions), send errors the producer
saw, and the ticks of the scheduled job against the seconds it ran. Run it with
``python tests/reliability/run.py -k failover`` (both settings of ``TASK_BROKER_MIN_REPLICAS``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from conftest import WorkerProcess, spawn_aum
from sentinel_redis import SentinelDeployment, start_sentinel_deployment

from aury_tasks import BrokerUnavailable, TaskManager
from aury_tasks.config.settings import get_settings
from aury_tasks.core import keys
from aury_tasks.scheduler.manager import SchedulerManager

from .conftest import MODULES, QUEUE, StartWorker
from .harness import Figures, PrivateRedis, Tally, done_count, free_port, wait_for

#: Tasks sent, and how many a second.
STREAM, RATE = 10_000, 400
#: Sends that returned before the master is killed.
KILL_AFTER = 3_000
#: The target of the issue with one replica to wait for: seconds without a completion.
PAUSE_TARGET = 15.0


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelDeployment]:
    deployment = start_sentinel_deployment(tmp_path / "sentinels")
    yield deployment
    deployment.stop()


class Stream(threading.Thread):
    """Sends ``work`` tasks tagged ``fo-N`` at :data:`RATE` a second; a send that raises is sent again."""

    def __init__(self, producer: TaskManager) -> None:
        super().__init__(daemon=True)
        self.work = producer.get_task("work")
        self.acknowledged: list[str] = []
        self.errors = 0
        self.first_error: str = ""

    def run(self) -> None:
        start = time.monotonic()
        for number in range(STREAM):
            tag = f"fo-{number}"
            while True:
                try:
                    self.work.send_with_options(args=(tag,), idempotency_key=tag)
                    break
                except BrokerUnavailable as error:
                    self.errors += 1
                    self.first_error = self.first_error or str(error)
                    time.sleep(0.05)
            self.acknowledged.append(tag)
            ahead = start + (number + 1) / RATE - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


def longest_gap(stamps: list[float]) -> float:
    """The longest time between two consecutive stamps."""
    ordered = sorted(stamps)
    return max((later - earlier for earlier, later in itertools.pairwise(ordered)), default=0.0)


def outage_lines(process: WorkerProcess) -> tuple[int, int]:
    """Warning and error lines the process logged, and tracebacks."""
    lines = process.output().splitlines()
    logged = sum(1 for line in lines if " WARNING " in line or " ERROR " in line)
    return logged, sum(1 for line in lines if line.startswith("Traceback"))


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "min_replicas",
    [
        pytest.param(
            0,
            marks=pytest.mark.scenario("16. failover: SIGKILL of the master, MIN_REPLICAS 0"),
            id="min_replicas_0",
        ),
        pytest.param(
            1,
            marks=pytest.mark.scenario("16. failover: SIGKILL of the master, MIN_REPLICAS 1"),
            id="min_replicas_1",
        ),
    ],
)
def test_sigkill_of_the_master_under_a_stream_of_10000_tasks(
    min_replicas: int, sentinels: SentinelDeployment, server: PrivateRedis, client: redis.Redis,
    start_worker: StartWorker, processes: list[WorkerProcess], figures: Figures, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Given a worker, a scheduler (a job every second) and the API, all on the sentinel URL
    env = {"TASK_BROKER_URL": sentinels.url, "TASK_BROKER_MIN_REPLICAS": str(min_replicas),
           "REL_COUNTS_URL": server.url}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    producer = _producer()
    worker = start_worker("-c", "8", env=env)
    scheduler, api, api_url = _scheduler_and_api(producer, server, tmp_path, processes, env)

    # When the master is SIGKILLed mid-stream, and started again as a replica once the sentinels
    # promoted its replica
    stream = Stream(producer)
    stream.start()
    wait_for(lambda: len(stream.acknowledged) >= KILL_AFTER, timeout=60, what="the first sends")
    sentinels.kill_master()
    killed = time.monotonic()
    promoted = sentinels.wait_for_failover()
    sentinels.restart_old_master_as_replica()
    stream.join(180)
    assert not stream.is_alive(), "the producer did not get its 10,000 sends through"

    # Then every acknowledged send completes (with MIN_REPLICAS 1), within a short pause
    sent = stream.acknowledged
    with contextlib.suppress(AssertionError):  # the lost ones never complete: counted below
        wait_for(lambda: done_count(client) >= len(sent), timeout=60, what="every sent task", every=0.2)
    new_master = redis.Redis(port=sentinels.replica_port)
    queue = keys.DEFAULT.broker_queue(QUEUE)
    wait_for(lambda: new_master.llen(queue) == 0, timeout=30, what="the queue drained")
    tally = Tally.read(client, sent)
    figures.add(tally)
    pause = longest_gap([float(stamp) for stamp in client.lrange("rel:done_at", 0, -1)])
    figures.recovery_s = round(pause, 1)
    figures.extra.update(failover_s=round(promoted - killed, 1), send_errors=stream.errors)

    # And the scheduler fired every tick once, the API answers, each process logged a few lines
    ticks, seconds = _ticks(scheduler, client)
    answer = httpx.get(f"{api_url}/api/v1/queues", timeout=10)
    for name, process in (("worker", worker), ("scheduler", scheduler), ("serve", api)):
        logged, tracebacks = outage_lines(process)
        (tmp_path / f"{name}.log").write_text(process.output())
        figures.extra[f"{name}_lines"] = f"{logged}/{tracebacks} tb"
    figures.extra.update(ticks=f"{ticks} in {seconds} s", api=answer.status_code)
    figures.note = f"first send error: {stream.first_error[:90]}" if stream.first_error else ""
    if min_replicas:
        assert tally.lost == 0, tally.lost_tags[:20]
        assert pause < PAUSE_TARGET
    assert ticks == seconds, scheduler.output()
    assert answer.status_code == 200, api.output()
    assert all(outage_lines(process)[1] == 0 for process in (worker, scheduler, api)), [
        process.output()[-3000:] for process in (worker, scheduler, api)
    ]


def _producer() -> TaskManager:
    from conftest import import_fixture_modules

    TaskManager.reset_instance()
    tm = TaskManager.get_instance()
    import_fixture_modules(MODULES)
    return tm


def _scheduler_and_api(
    producer: TaskManager, server: PrivateRedis, tmp_path: Path, processes: list[WorkerProcess],
    env: dict[str, str],
) -> tuple[WorkerProcess, WorkerProcess, str]:  # fmt: skip
    SchedulerManager.reset_instance()
    SchedulerManager.get_instance().add_job(
        producer.get_task("beat"), interval=1, id="beat", args=["beat"], coalesce=False
    )
    scheduler = spawn_aum(server.url, tmp_path, "scheduler", "--modules", str(MODULES), env=env)
    port = free_port()
    api = spawn_aum(server.url, tmp_path, "serve", "--port", str(port), "--insecure-no-auth",
                    "--modules", str(MODULES), env=env)  # fmt: skip
    processes += [scheduler, api]
    scheduler.wait_for_line("scheduler ready")
    api.wait_for_line("Application startup complete")
    return scheduler, api, f"http://127.0.0.1:{port}"


def _ticks(scheduler: WorkerProcess, client: redis.Redis) -> tuple[int, int]:
    """Stop the scheduler; the job's runs, and the seconds from its first run to its last, plus one."""
    os.killpg(scheduler.process.pid, signal.SIGTERM)
    scheduler.process.wait(20)
    time.sleep(2)  # the last tick's task runs
    beats = [float(stamp) for stamp in client.lrange("rel:beats:beat", 0, -1)]
    return len(beats), round(max(beats) - min(beats)) + 1 if beats else 0
