"""Shared fixtures: a real Redis (the embedded server) on a private port, and real workers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from brokers import (
    FIXTURE_QUEUES,
    QUEUE_SUFFIX_VARIABLE,
    broker_url_of_tests,
    delete_queues,
    require_rabbitmq,
    unique_suffix,
)

from aury_tasks import TaskManager
from aury_tasks.broker.embedded import EmbeddedServer, start_server
from aury_tasks.config.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_MODULES = ROOT / "tests" / "fixtures" / "sample_modules"


@pytest.fixture(autouse=True)
def _clean_task_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with no TASK_* variables, fresh settings and no TaskManager."""
    for key in list(os.environ):
        if key.startswith("TASK_"):
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    TaskManager.reset_instance()
    yield
    TaskManager.reset_instance()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """The embedded server, started on a private loopback port for this test session."""
    server = start_server(tmp_path_factory.mktemp("redis"), port=_free_port())
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedServer) -> Iterator[str]:
    """URL of the test Redis, flushed before and after the test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    client.flushall()
    client.close()


@pytest.fixture
def broker_url(
    request: pytest.FixtureRequest, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """TASK_BROKER_URL of the test's producer and workers: the test Redis, unless parametrized.

    Parametrized with ``rabbitmq`` (``brokers.on_both_brokers``), the RabbitMQ of this machine
    (skipped where it does not answer), with the ledger in the test Redis
    (``TASK_RESULT_BACKEND_URL``) and queue names of this test's own, deleted after the test.
    """
    if getattr(request, "param", "redis") == "redis":
        yield redis_url
        return
    url = broker_url_of_tests(require_rabbitmq())
    suffix = unique_suffix()
    monkeypatch.setenv(QUEUE_SUFFIX_VARIABLE, suffix)
    monkeypatch.setenv("TASK_RESULT_BACKEND_URL", redis_url)
    try:
        yield url
    finally:  # after the workers (fixtures that use this one) are stopped: none declares them again
        delete_queues(url, [name + suffix for name in FIXTURE_QUEUES])


@pytest.fixture
def queue(broker_url: str) -> Callable[[str], str]:
    """The name a fixture module's queue (``fixture``, ``other``, ``flows``) has in this test."""
    suffix = os.environ.get(QUEUE_SUFFIX_VARIABLE, "")
    return lambda name: name + suffix


@pytest.fixture
def on_rabbitmq(broker_url: str) -> bool:
    """Whether this test's broker is RabbitMQ."""
    return broker_url.startswith("amqp")


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@dataclass
class WorkerProcess:
    """An ``aum`` subprocess (a worker, a scheduler) and the lines it logged so far."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.process.poll() is not None and not (self._reader and self._reader.is_alive()):
                break
            time.sleep(0.02)
        raise AssertionError(f"process never logged {text!r}; output:\n{self.output()}")

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for the worker to exit on its own; return its exit code once all output is read."""
        code = self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        return code

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the whole process group: ``aum worker`` and its worker processes."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            return self.wait()


def spawn_aum(
    broker_url: str,
    cwd: Path,
    *args: str,
    env: dict[str, str | None] | None = None,
    ledger_url: str | None = None,
) -> WorkerProcess:
    """Start ``python -m aury_tasks.cli ARGS`` on ``broker_url`` in its own process group (session).

    ``ledger_url`` is its TASK_RESULT_BACKEND_URL (the test Redis, when the broker is RabbitMQ).
    Output (stdout and stderr) is collected line by line. A ``None`` in ``env`` unsets that variable.
    """
    full_env: dict[str, str | None] = {k: v for k, v in os.environ.items() if not k.startswith("TASK_")}
    if ledger_url is not None:
        full_env["TASK_RESULT_BACKEND_URL"] = ledger_url
    full_env.update(
        {
            "TASK_BROKER_URL": broker_url,
            "TASK_DATA_DIR": str(cwd / ".aum"),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "aury_tasks.cli", *args],
        cwd=cwd,
        env={k: v for k, v in full_env.items() if v is not None},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    spawned = WorkerProcess(process)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            spawned.lines.append(line.rstrip("\n"))

    spawned._reader = threading.Thread(target=read, daemon=True)
    spawned._reader.start()
    return spawned


def _ledger_url(broker_url: str, redis_url: str) -> str | None:
    """TASK_RESULT_BACKEND_URL of a process on ``broker_url``: the test Redis, when that is not the broker."""
    return None if broker_url == redis_url else redis_url


def stop_all(processes: list[WorkerProcess], *, graceful: bool = True) -> None:
    """Stop every process: signal all first (each takes seconds to stop gracefully), then wait.

    ``graceful=False`` kills them at once (a test's teardown: what a graceful stop does is tested
    by the tests that stop a worker themselves, and Redis is flushed before the next test).
    """
    for spawned in processes:
        if spawned.process.poll() is None:
            if graceful:
                spawned.process.terminate()
            else:
                spawned.signal_group(signal.SIGKILL)
    for spawned in processes:
        spawned.stop()
        spawned.signal_group(signal.SIGKILL)  # a child left behind by a killed parent


@pytest.fixture
def start_worker(broker_url: str, redis_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``aum worker`` in a subprocess on the test's broker; it is stopped after the test.

    ``start_worker("-q", "fixture", env={...}, modules=FIXTURE_MODULES)`` returns once the worker
    process logged that it is ready. A ``None`` in ``env`` unsets that variable. The worker leads
    its own process group (session), so a test can signal it and its worker processes together.
    """
    workers: list[WorkerProcess] = []

    def start(
        *args: str,
        env: dict[str, str | None] | None = None,
        modules: Path = FIXTURE_MODULES,
        ready: bool = True,
    ) -> WorkerProcess:
        worker = spawn_aum(
            broker_url,
            tmp_path,
            "worker",
            "--modules",
            str(modules),
            *args,
            env=env,
            ledger_url=_ledger_url(broker_url, redis_url),
        )
        workers.append(worker)
        if ready:
            worker.wait_for_line("Worker process is ready for action")
        return worker

    yield start
    stop_all(workers, graceful=False)


@pytest.fixture
def start_aum(broker_url: str, redis_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``aum ARGS`` (any command) in a subprocess on the test's broker; it is stopped after."""
    started: list[WorkerProcess] = []

    def start(*args: str, env: dict[str, str | None] | None = None) -> WorkerProcess:
        spawned = spawn_aum(
            broker_url, tmp_path, *args, env=env, ledger_url=_ledger_url(broker_url, redis_url)
        )
        started.append(spawned)
        return spawned

    yield start
    stop_all(started, graceful=False)


@pytest.fixture
def start_scheduler(
    broker_url: str, redis_url: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``aum scheduler`` in a subprocess on the test Redis; it is stopped after the test.

    ``start_scheduler("--lease-ttl", "2", modules=FIXTURE_MODULES)`` returns once it has started.
    """
    schedulers: list[WorkerProcess] = []

    def start(
        *args: str, env: dict[str, str | None] | None = None, modules: Path = FIXTURE_MODULES
    ) -> WorkerProcess:
        scheduler = spawn_aum(
            broker_url,
            tmp_path,
            "scheduler",
            "--modules",
            str(modules),
            *args,
            env=env,
            ledger_url=_ledger_url(broker_url, redis_url),
        )
        schedulers.append(scheduler)
        scheduler.wait_for_line("scheduler ready")
        return scheduler

    yield start
    stop_all(schedulers, graceful=False)


@pytest.fixture
def producer(broker_url: str, monkeypatch: pytest.MonkeyPatch) -> TaskManager:
    """The default TaskManager in producer mode on the test's broker, with fixture tasks imported."""
    monkeypatch.setenv("TASK_BROKER_URL", broker_url)
    get_settings.cache_clear()
    tm = TaskManager.get_instance()
    import_fixture_modules()
    return tm


@pytest.fixture
def import_modules() -> Callable[[Path], None]:
    """A function that (re-)imports the task modules of a directory into the current TaskManager."""
    return import_fixture_modules


def import_fixture_modules(modules_dir: Path = FIXTURE_MODULES) -> None:
    """(Re-)import the task modules of ``modules_dir`` so they register with the current TaskManager."""
    from aury_tasks.worker.discovery import import_task_modules

    package = modules_dir.name
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]
    import_task_modules(modules_dir)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
