"""Fixtures of the reliability suite: a private Redis with a planted password, workers, the figures.

Every test gets its own :class:`PrivateRedis`, so killing, stalling or restarting it touches no
other test. After every test the secrets sweep looks for the planted password in everything the
test saw: each process's output, the log lines of the test process, the error messages the test
kept, and every key in Redis (task records, dead letters, messages).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

# The root conftest is importable as ``conftest`` (pytest puts tests/ on sys.path for it).
from conftest import WorkerProcess, import_fixture_modules, spawn_aum, stop_all
from loguru import logger

from aury_tasks import TaskManager
from aury_tasks.config.settings import get_settings

from .harness import Figures, PrivateRedis

MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "reliability_modules"
QUEUE = "reliability"
#: A short heartbeat timeout: a dead worker's tasks come back within about 2 + 1 seconds.
HEARTBEAT_TIMEOUT = 2

StartWorker = Callable[..., WorkerProcess]


class SecretsSweep:
    """Texts a test collected (error messages it caught), checked with everything else at the end."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.texts: list[str] = []
        self.log_lines: list[str] = []

    def keep(self, text: str) -> str:
        """Keep ``text`` (an error message the test saw) for the sweep; return it."""
        self.texts.append(text)
        return text

    def leaks(self, processes: list[WorkerProcess], client: redis.Redis | None) -> list[str]:
        """Where the password shows: ``[]`` when nowhere."""
        found = [f"output of {p.process.args}" for p in processes if self.password in p.output()]
        found += [f"error message {text[:200]!r}" for text in self.texts if self.password in text]
        found += [f"log line {line[:200]!r}" for line in self.log_lines if self.password in line]
        if client is not None:
            found += [f"Redis key {key}" for key in _keys_holding(client, self.password)]
        return found


def _keys_holding(client: redis.Redis, secret: str) -> list[str]:
    """Keys whose name or value contains ``secret`` (every type the toolkit writes), read as bytes."""
    pool = client.connection_pool
    raw = redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, **{**pool.connection_kwargs, "decode_responses": False}
    ))  # fmt: skip
    needle = secret.encode()
    holding = []
    try:
        for key in raw.scan_iter(count=1000):
            kind = raw.type(key)
            if kind == b"string":
                values = [raw.get(key) or b""]
            elif kind == b"hash":
                values = [field + b"=" + value for field, value in raw.hgetall(key).items()]
            elif kind == b"list":
                values = raw.lrange(key, 0, -1)
            elif kind == b"set":
                values = list(raw.smembers(key))
            elif kind == b"zset":
                values = raw.zrange(key, 0, -1)
            else:
                values = []
            if needle in key or any(needle in value for value in values):
                holding.append(key.decode(errors="backslashreplace"))
    finally:
        raw.close()
    return holding


@pytest.fixture
def password() -> str:
    return f"planted-S3cret-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def server(tmp_path: Path, password: str, request: pytest.FixtureRequest) -> Iterator[PrivateRedis]:
    """This test's redis-server (``@pytest.mark.fsync("always")`` to fsync every write)."""
    marker = request.node.get_closest_marker("fsync")
    private = PrivateRedis(tmp_path / "redis", password, fsync=marker.args[0] if marker else "everysec")
    private.start()
    yield private
    private.resume()
    private.stop()


@pytest.fixture
def client(server: PrivateRedis) -> Iterator[redis.Redis]:
    """A client of the private Redis (decoded), for the test's own reads."""
    connection = server.client()
    yield connection
    connection.close()


@pytest.fixture
def producer(server: PrivateRedis, monkeypatch: pytest.MonkeyPatch) -> TaskManager:
    """The default TaskManager sending to the private Redis, with the suite's tasks imported."""
    monkeypatch.setenv("TASK_BROKER_URL", server.url)
    get_settings.cache_clear()
    tm = TaskManager.get_instance()
    import_fixture_modules(MODULES)
    return tm


@pytest.fixture
def processes() -> list[WorkerProcess]:
    """Every ``aum`` process the test started (the sweep reads their output)."""
    return []


@pytest.fixture
def start_worker(
    server: PrivateRedis, tmp_path: Path, processes: list[WorkerProcess]
) -> Iterator[StartWorker]:
    """Start ``aum worker -q reliability`` on the private Redis; stopped after the test.

    ``start_worker("-c", "4", env={...}, ready=True)``: ``env`` adds to (``None`` unsets) the
    worker's environment; ``ready`` waits for its worker process to be ready.
    """

    def start(*args: str, env: dict[str, str | None] | None = None, ready: bool = True) -> WorkerProcess:
        full_env: dict[str, str | None] = {"TASK_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT), **(env or {})}
        worker = spawn_aum(
            server.url, tmp_path, "worker", "--modules", str(MODULES), "-q", QUEUE, *args, env=full_env
        )
        processes.append(worker)
        if ready:
            worker.wait_for_line("Worker process is ready for action")
        return worker

    yield start
    stop_all(processes)


@pytest.fixture
def sweep(
    password: str, server: PrivateRedis, processes: list[WorkerProcess], start_worker: StartWorker
) -> Iterator[SecretsSweep]:
    """The secrets sweep: after the test, the planted password must show nowhere."""
    secrets = SecretsSweep(password)
    sink = logger.add(lambda message: secrets.log_lines.append(str(message)), level="DEBUG")
    yield secrets
    logger.remove(sink)
    stop_all(processes)
    client = server.client() if server.answers() else None
    try:
        leaks = secrets.leaks(processes, client)
    finally:
        if client is not None:
            client.close()
    assert not leaks, f"the Redis password leaked into: {leaks}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test, so ``figures`` knows whether the scenario passed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def figures(request: pytest.FixtureRequest, sweep: SecretsSweep) -> Iterator[Figures]:
    """This scenario's figures (label from ``@pytest.mark.scenario``), reported after the test."""
    marker = request.node.get_closest_marker("scenario")
    row = Figures(scenario=marker.args[0] if marker else request.node.name)
    yield row
    call = getattr(request.node, "report_call", None)
    row.outcome = call.outcome if call is not None else "error"
    row.write()
