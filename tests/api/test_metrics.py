"""Prometheus metrics: `GET /metrics` of the API and the port of `aum worker` (real Redis and workers)."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from conftest import FIXTURE_MODULES, WorkerProcess, spawn_aum
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aury_tasks.scheduler import SchedulerManager

from .conftest import Send, wait_until_ended

#: Parsed samples: (metric sample name, sorted label pairs) -> value.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by its name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels``, or ``None``."""
    return samples.get((name, tuple(sorted(labels.items()))))


def scrape_until(
    read: Callable[[], Samples], done: Callable[[Samples], bool], timeout: float = 20.0
) -> Samples:
    """Scrape until ``done`` holds (polling with a deadline); the last scrape."""
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    while time.monotonic() < deadline:
        samples = read()
        if done(samples):
            return samples
        time.sleep(0.1)
    raise AssertionError(f"the metrics never got there; last scrape: {samples}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_metrics_show_queues_dead_letters_workers_and_ended_tasks(
    api: TestClient, send: Send, start_worker: Callable[..., WorkerProcess]
) -> None:
    # Given a worker that ran two tasks that succeed and one that fails for good (its message
    # dead-lettered, its record a failure), and two tasks
    # waiting on a queue no worker serves
    start_worker("-q", "fixture")
    added = [send("add", args=[1, 2]), send("add", args=[3, 4])]
    dead = send("permanent", args=["m1"])
    for task in (*added, dead):
        wait_until_ended(api, task["id"])
    for tag in ("a", "b"):
        send("on_other_queue", args=[tag])
    add_name = added[0]["task_name"]

    def read() -> Samples:
        answer = api.get("/metrics")
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/plain")
        return parse(answer.text)

    # When /metrics is scraped (once the dead letter has landed and the worker wrote its
    # statistics, once a second)
    samples = scrape_until(
        read,
        lambda s: (
            value(s, "aury_tasks_queue_dead_letters", queue="fixture") == 1
            and value(s, "aury_tasks_queue_ended_last_hour", queue="fixture", status="failure") == 1
        ),
    )

    # Then the queues, the ledger, the worker and the last hour's tasks are there
    assert value(samples, "aury_tasks_queue_pending", queue="other") == 2
    assert value(samples, "aury_tasks_queue_pending", queue="fixture") == 0
    assert value(samples, "aury_tasks_queue_delayed", queue="fixture") == 0
    assert value(samples, "aury_tasks_queue_running", queue="fixture") == 0
    assert value(samples, "aury_tasks_queue_dead_letters", queue="other") == 0
    assert value(samples, "aury_tasks_workers_alive") == 1
    assert value(samples, "aury_tasks_queue_workers", queue="fixture") == 1
    assert value(samples, "aury_tasks_queue_workers", queue="other") == 0
    assert value(samples, "aury_tasks_tasks", queue="fixture", status="success") == 2
    assert value(samples, "aury_tasks_tasks", queue="fixture", status="failure") == 1
    assert value(samples, "aury_tasks_tasks", queue="other", status="pending") == 2
    assert value(samples, "aury_tasks_queue_ended_last_hour", queue="fixture", status="success") == 2
    assert value(samples, "aury_tasks_queue_ended_last_hour", queue="fixture", status="failure") == 1
    assert value(samples, "aury_tasks_queue_ended_last_hour", queue="fixture", status="dead") == 0
    assert value(samples, "aury_tasks_task_ended_last_hour", task=add_name, status="success") == 2
    assert value(samples, "aury_tasks_task_ended_last_hour", task=dead["task_name"], status="failure") == 1
    assert value(samples, "aury_tasks_queue_enqueued_last_hour", queue="fixture") == 3
    assert value(samples, "aury_tasks_queue_enqueued_last_hour", queue="other") == 2
    assert value(samples, "aury_tasks_task_enqueued_last_hour", task=add_name) == 2
    p95 = value(samples, "aury_tasks_task_duration_seconds_last_hour", task=add_name, quantile="0.95")
    assert p95 is not None and p95 > 0
    # no scheduler runs: no leader, no jobs
    assert value(samples, "aury_tasks_scheduler_leader", holder="") == 0
    assert value(samples, "aury_tasks_scheduler_jobs") == 0
    # and no label is a task id
    assert not any(v == task["id"] for (_, labels) in samples for _, v in labels for task in added)


def test_metrics_need_a_token(app_client: TestClient) -> None:
    # Given a client without credentials
    # When it scrapes
    answer = app_client.get("/metrics")

    # Then it is refused
    assert answer.status_code == 401


def test_metrics_count_the_schedulers_fires_and_misses_and_show_its_leader(
    api: TestClient, start_scheduler: Callable[..., WorkerProcess]
) -> None:
    # Given a job every minute whose last change was ten minutes ago, that may fire only within a
    # second of its time and does not coalesce (so the ticks planned since are missed), a paused
    # job, and one run by hand
    scheduler = SchedulerManager.get_instance()
    job = scheduler.add_job("add", id="minutely", cron="* * * * *", args=[1, 1], misfire_grace_time=1,
                            coalesce=False)  # fmt: skip
    scheduler.store.put(dataclasses.replace(job, updated_at=time.time() - 600))
    scheduler.add_job("add", id="resting", interval=3600, args=[2, 2], paused=True)
    scheduler.run_job_now("resting")

    # When a scheduler leads and /metrics is scraped
    start_scheduler()

    def read() -> Samples:
        return parse(api.get("/metrics").text)

    samples = scrape_until(
        read, lambda s: (value(s, "aury_tasks_scheduler_misses_total", job="minutely") or 0) >= 1
    )

    # Then the misses, the fire by hand, the jobs and the leader are counted
    assert value(samples, "aury_tasks_scheduler_fires_total", job="resting") == 1
    assert (value(samples, "aury_tasks_scheduler_last_fire_timestamp_seconds", job="resting") or 0) > 0
    assert value(samples, "aury_tasks_scheduler_jobs") == 2
    assert value(samples, "aury_tasks_scheduler_jobs_paused") == 1
    (holder,) = [dict(labels)["holder"] for name, labels in samples if name == "aury_tasks_scheduler_leader"]
    assert holder and value(samples, "aury_tasks_scheduler_leader", holder=holder) == 1
    assert holder == scheduler.leader()


def test_a_worker_with_a_metrics_port_serves_dramatiqs_counters(
    api: TestClient, send: Send, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    # Given a worker serving its metrics on a free port, that ran two tasks and dead-lettered one
    port, temp = free_port(), tmp_path / "temp"
    temp.mkdir()
    worker = start_worker("-q", "fixture", env={"TASK_METRICS_PORT": str(port), "TMPDIR": str(temp)})
    added = [send("add", args=[1, 2]), send("add", args=[2, 3])]
    dead = send("permanent", args=["w1"])
    for task in (*added, dead):
        wait_until_ended(api, task["id"])
    add_labels = {"queue_name": "fixture", "actor_name": added[0]["task_name"]}
    dead_labels = {"queue_name": "fixture", "actor_name": dead["task_name"]}

    def read() -> Samples:
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        except httpx.TransportError:  # the exposition server is not up yet
            return {}
        assert answer.status_code == 200
        return parse(answer.text)

    # When its port is scraped
    samples = scrape_until(read, lambda s: value(s, "dramatiq_message_rejects_total", **dead_labels) == 1)

    # Then Dramatiq's counters and histogram have the tasks it ran, by queue and actor
    assert value(samples, "dramatiq_messages_total", **add_labels) == 2
    assert value(samples, "dramatiq_message_duration_milliseconds_count", **add_labels) == 2
    assert value(samples, "dramatiq_messages_total", **dead_labels) == 1
    assert value(samples, "dramatiq_message_errors_total", **dead_labels) == 1
    assert f"metrics at http://127.0.0.1:{port}/metrics" in worker.output()
    # and the multiprocess files, in a private directory, go when the worker stops
    (files,) = temp.glob("aury-tasks-metrics-*")
    assert any(files.iterdir())
    assert worker.stop() == 0 and not files.exists()


def test_a_metrics_port_without_prometheus_client_stops_the_worker_in_one_line(
    redis_url: str, tmp_path: Path
) -> None:
    # Given an environment where prometheus_client cannot be imported
    shim = tmp_path / "shim" / "prometheus_client"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('prometheus_client is not installed')\n")

    # When a worker is started with a metrics port
    worker = spawn_aum(
        redis_url, tmp_path, "worker", "--modules", str(FIXTURE_MODULES), "-q", "fixture",
        env={"TASK_METRICS_PORT": str(free_port()),
             "PYTHONPATH": os.pathsep.join(filter(None, [str(shim.parent), os.environ.get("PYTHONPATH")]))},
    )  # fmt: skip
    code = worker.wait()

    # Then it exits 2 saying which setting needs which install
    assert code == 2, worker.output()
    error = [line for line in worker.lines if "TASK_METRICS_PORT" in line]
    assert len(error) == 1 and "pip install 'aury-tasks[api]'" in error[0]
    assert "Worker process is ready" not in worker.output()


def test_the_worker_command_has_a_metrics_port_option() -> None:
    # Given the worker command's help
    from click.testing import CliRunner

    from aury_tasks.cli.main import main

    # When it is shown
    result = CliRunner().invoke(main, ["worker", "--help"])

    # Then it has the option and names its setting
    assert result.exit_code == 0, result.output
    assert "--metrics-port" in result.output and "TASK_METRICS_PORT" in result.output
