"""``-q cpu:2,io:20,default``: the syntax, its one-line errors, the worker with a lane per limited queue."""

from __future__ import annotations

import hashlib
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
from click.testing import CliRunner
from dramatiq import cli as dramatiq_cli
from dramatiq import worker as dramatiq_worker
from dramatiq.brokers.stub import StubBroker

from aury_tasks.cli import main
from aury_tasks.core.errors import ConfigError
from aury_tasks.worker.lanes import QueueLimitedWorker, QueueSpec, parse_queues

# Parsing


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        (["emails"], [QueueSpec("emails")]),
        (["emails,default", "reports"], [QueueSpec("emails"), QueueSpec("default"), QueueSpec("reports")]),
        (["cpu:2,io:20,default"], [QueueSpec("cpu", 2), QueueSpec("io", 20), QueueSpec("default")]),
        ([" cpu : 1 , io:8,", "x:1024"], [QueueSpec("cpu", 1), QueueSpec("io", 8), QueueSpec("x", 1024)]),
        ([], []),
    ],
    ids=["one", "comma-and-repeated", "limits", "spaces-and-trailing-comma", "none"],
)
def test_queues_parse_as_names_with_optional_limits(given: list[str], parsed: list[QueueSpec]) -> None:
    assert parse_queues(given) == parsed


def test_a_spec_shows_as_it_is_written() -> None:
    assert [str(spec) for spec in parse_queues(["cpu:2,default"])] == ["cpu:2", "default"]


BAD = [
    (["cpu:0"], "'cpu:0': the limit after ':' must be a whole number from 1 to 1024"),
    (["cpu:x"], "'cpu:x': the limit after ':' must be a whole number"),
    (["cpu:"], "'cpu:': the limit after ':' must be a whole number"),
    (["cpu:-1"], "'cpu:-1': the limit after ':' must be a whole number"),
    (["cpu:+2"], "'cpu:+2': the limit after ':' must be a whole number"),
    (["cpu:1.5"], "'cpu:1.5': the limit after ':' must be a whole number"),
    (["cpu:1025"], "'cpu:1025': the limit after ':' must be a whole number from 1 to 1024"),
    ([":3"], "':3': a queue name is missing before ':'"),
    (["cpu:2,io", "cpu"], "'cpu': queue 'cpu' is given twice"),
    (["io,io:2"], "'io:2': queue 'io' is given twice"),
]


@pytest.mark.parametrize(("given", "said"), BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_syntax_is_a_config_error_naming_the_bad_part(given: list[str], said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_queues(given)

    assert caught.value.message.startswith(f"invalid -q/--queues {said}"), caught.value.message
    assert "\n" not in caught.value.message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("command", ["worker", "run"])
@pytest.mark.parametrize(("value", "bad"), [("cpu:0", "'cpu:0'"), ("cpu:x,io", "'cpu:x'"), (":3", "':3'"),
                                            ("cpu,cpu:2", "'cpu:2'")])  # fmt: skip
def test_aum_exits_2_with_one_line_naming_the_bad_part(
    command: str, value: str, bad: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no broker at all (the syntax is checked before anything is read or reached)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TASK_BROKER_URL", "redis://127.0.0.1:1/0")

    # When aum worker / aum run is given a bad -q
    result = CliRunner().invoke(main, [command, "-q", value])

    # Then it exits 2 with one line that names the bad part, and no traceback
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Error: invalid -q/--queues {bad}: "), lines


# The worker


@pytest.fixture
def broker() -> Iterator[StubBroker]:
    stub = StubBroker()
    stub.emit_after("process_boot")
    yield stub
    stub.close()


class Peaks:
    """How many runs of each queue ran at once, at most."""

    def __init__(self) -> None:
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.lock = threading.Lock()

    def task(self, broker: StubBroker, queue: str) -> dramatiq.Actor[..., None]:
        def run(seconds: float) -> None:
            with self.lock:
                self.running[queue] = self.running.get(queue, 0) + 1
                self.peak[queue] = max(self.peak.get(queue, 0), self.running[queue])
            time.sleep(seconds)
            with self.lock:
                self.running[queue] -= 1

        return dramatiq.actor(run, actor_name=f"run_{queue}", queue_name=queue, broker=broker, max_retries=0)


@pytest.fixture
def start(broker: StubBroker) -> Iterator[Callable[..., QueueLimitedWorker]]:
    workers: list[QueueLimitedWorker] = []

    def start_worker(**kwargs: Any) -> QueueLimitedWorker:
        worker = QueueLimitedWorker(broker, worker_timeout=50, **kwargs)
        worker.start()
        workers.append(worker)
        return worker

    yield start_worker
    for worker in workers:
        worker.stop()


def test_each_limited_queue_has_threads_of_its_own_and_the_others_share(
    broker: StubBroker, start: Callable[..., QueueLimitedWorker]
) -> None:
    # Given tasks on a cpu, an io and the default queue
    peaks = Peaks()
    actors = [peaks.task(broker, queue) for queue in ("cpu", "io", "default")]

    # When a worker limits cpu to 1 and io to 2, with 3 shared threads
    worker = start(queues=["cpu", "io", "default"], worker_threads=3, limits={"cpu": (1, 4), "io": (2, 8)})
    for _ in range(8):
        for actor in actors:
            actor.send(0.02)
    for queue in ("cpu", "io", "default"):
        broker.join(queue, timeout=10_000)
    worker.join()

    # Then it has 1 + 2 + 3 threads, each limited queue fed by its lane with its prefetch
    assert len(worker.workers) == 6
    assert worker.consumers["cpu"].prefetch == 4 and worker.consumers["io"].prefetch == 8
    assert worker.consumers["cpu"].work_queue is worker.lanes["cpu"].work_queue
    assert worker.consumers["cpu.DQ"].work_queue is worker.lanes["cpu"].work_queue
    assert worker.consumers["default"].work_queue is worker.work_queue
    # ... and no queue ran more at once than its limit (or the shared threads)
    assert peaks.peak["cpu"] == 1
    assert peaks.peak["io"] <= 2 and peaks.peak["default"] <= 3


def test_when_every_queue_has_a_limit_no_shared_thread_is_started(
    broker: StubBroker, start: Callable[..., QueueLimitedWorker]
) -> None:
    peaks = Peaks()
    cpu = peaks.task(broker, "cpu")

    worker = start(queues=["cpu"], worker_threads=8, limits={"cpu": (2, 8)})
    for _ in range(6):
        cpu.send(0.02)
    broker.join("cpu", timeout=10_000)
    worker.join()

    assert len(worker.workers) == 2
    assert peaks.peak["cpu"] <= 2


# What it relies on inside Dramatiq (pinned to its minor version)

#: (what, object, digest of its source): QueueLimitedWorker mirrors or hooks into these.
RELIED_ON = [
    ("Worker.__init__", dramatiq_worker.Worker.__init__, "322bdd648b315209"),
    ("Worker.start", dramatiq_worker.Worker.start, "e7ddb0d997c7555c"),
    ("Worker.stop", dramatiq_worker.Worker.stop, "b07f970155fef59e"),
    ("Worker.join", dramatiq_worker.Worker.join, "f86dce60a47ab1f3"),
    ("Worker._add_consumer", dramatiq_worker.Worker._add_consumer, "79ec1f676e9b774f"),
    ("Worker._add_worker", dramatiq_worker.Worker._add_worker, "cafe781cfd6afeb7"),
    ("cli.worker_process", dramatiq_cli.worker_process, "1a5485529149ead9"),
]


@pytest.mark.parametrize(("what", "target", "digest"), RELIED_ON, ids=[r[0] for r in RELIED_ON])
def test_the_dramatiq_code_the_lanes_rely_on_is_unchanged(what: str, target: Any, digest: str) -> None:
    source = inspect.getsource(target).encode()
    assert hashlib.sha256(source).hexdigest()[:16] == digest, (
        f"Dramatiq {dramatiq.__version__} changed {what}; check aury_tasks/worker/lanes.py "
        "(QueueLimitedWorker mirrors Worker.stop and _add_consumer, takes a lane per _add_worker call) and "
        "aury_tasks/worker/process.py _use_queue_limits (worker_process builds `Worker(...)` by name)"
    )
    assert "Worker" in dramatiq_cli.worker_process.__code__.co_names
