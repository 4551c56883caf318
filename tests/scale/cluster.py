"""The processes of the many-hosts rig: a Redis host, worker hosts, scheduler hosts, the producer.

The Redis host runs the embedded server's binary bound to its address (a password, no protected
mode: it is reached from other hosts). Worker and scheduler hosts run ``aum worker`` and ``aum
scheduler`` with a short heartbeat timeout. The test process is the producer host: it steps into
that namespace (:meth:`Rig.inside`) and sends from there.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis

# The root conftest is importable as ``conftest`` (pytest puts tests/ on sys.path for it).
from conftest import WorkerProcess

from aury_tasks.broker.embedded import find_server_binary

from .evidence import Run, read_runs
from .rig import Host, Rig

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / "tests" / "fixtures" / "scale_modules"
QUEUE = "scale"
REDIS_PORT = 6390
#: Seconds without a heartbeat before a worker is taken for dead (the suite's, not the default 15).
HEARTBEAT_TIMEOUT = 3.0
#: The scheduler's leader lease (``aum scheduler --lease-ttl``).
LEASE_TTL = 3.0


@dataclass
class Cluster:
    """The hosts of one test and what runs on them (see the module's text)."""

    rig: Rig
    password: str = field(default_factory=lambda: uuid.uuid4().hex)
    processes: list[WorkerProcess] = field(default_factory=list)
    redis_host: Host | None = None
    producer: Host | None = None
    server: subprocess.Popen[bytes] | None = None

    @property
    def evidence(self) -> Path:
        return self.rig.directory / "evidence"

    @property
    def url(self) -> str:
        assert self.redis_host is not None
        return f"redis://:{self.password}@{self.redis_host.address}:{REDIS_PORT}/0"

    def start_redis(self) -> None:
        """The Redis host, and the producer host (the test process steps into it to talk to Redis)."""
        self.evidence.mkdir(parents=True, exist_ok=True)
        host = self.redis_host = self.rig.add_host("redis")
        self.producer = self.rig.add_host("producer")
        args = [find_server_binary(), "--port", str(REDIS_PORT), "--bind", host.address,
                "--protected-mode", "no", "--requirepass", self.password, "--save", "",
                "--appendonly", "no", "--dir", str(host.directory),
                "--logfile", str(host.directory / "server.log")]  # fmt: skip
        self.server = subprocess.Popen(self.rig.command(host, *args), stdin=subprocess.DEVNULL,
                                       start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 20
        while not self._answers():
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on {host.address}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        with self.on_producer():
            client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False
            finally:
                client.close()

    def on_producer(self) -> contextlib.AbstractContextManager[None]:
        """Run the calling thread on the producer host for the block."""
        assert self.producer is not None
        return self.rig.inside(self.producer)

    def spawn(self, host: Host, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        """``aum ARGS`` on ``host``, on the rig's Redis; its output collected line by line."""
        extra = {"TASK_BROKER_URL": self.url, "TASK_HEARTBEAT_TIMEOUT": f"{HEARTBEAT_TIMEOUT:g}",
                 "SCALE_EVIDENCE_DIR": str(self.evidence), **(env or {})}  # fmt: skip
        full_env = self.rig.environment(host, extra)
        process = subprocess.Popen(
            self.rig.python(host, "-m", "aury_tasks.cli", *args), cwd=host.directory, env=full_env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        spawned = WorkerProcess(process)

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                spawned.lines.append(line.rstrip("\n"))

        spawned._reader = threading.Thread(target=read, daemon=True)
        spawned._reader.start()
        self.processes.append(spawned)
        return spawned

    def start_worker(self, host: Host, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        """``aum worker -q scale`` on ``host`` (one process unless ``args`` say otherwise)."""
        return self.spawn(host, "worker", "--modules", str(MODULES), "-q", QUEUE, "-p", "1", *args, env=env)

    def start_scheduler(self, host: Host) -> WorkerProcess:
        """``aum scheduler --lease-ttl LEASE_TTL`` on ``host``."""
        return self.spawn(host, "scheduler", "--modules", str(MODULES), "--lease-ttl", f"{LEASE_TTL:g}")

    def runs(self) -> list[Run]:
        """Every run the tasks noted so far."""
        return read_runs(self.evidence)

    def stop(self) -> None:
        """Kill every process of the rig (the namespaces go next): nothing here is about stopping well."""
        for spawned in self.processes:
            spawned.signal_group(signal.SIGKILL)
        for spawned in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                spawned.wait(10)
        if self.server is not None and self.server.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.server.kill()
            self.server.wait(10)
