"""The reliability suite's parts: a private redis-server to fault, the tally of runs, the figures.

Each scenario runs real ``aum worker`` processes against a :class:`PrivateRedis` (the embedded
server's binary, started by the test with a planted password, so the secrets sweep has something
to look for), injects its fault, then reads the counts the tasks kept (see
``tests/fixtures/reliability_modules/reliability/tasks.py``) into a :class:`Tally`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from aury_tasks.broker.embedded import find_server_binary

#: Where ``run.py`` wants each scenario's figures (one JSON object per line); unset: not written.
REPORT_ENV = "AURY_RELIABILITY_REPORT"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateRedis:
    """A redis-server of one test, with AOF and a password, that the test can kill, stall and restart.

    Parameters:
      directory: its data directory (kept across restarts: the AOF brings the data back).
      password: ``requirepass``; it is in :attr:`url`, and must never show in a log or a record.
      fsync: ``appendfsync`` (``always`` loses nothing to a SIGKILL of the server; ``everysec``
        may lose its last second).
    """

    def __init__(self, directory: Path, password: str, *, fsync: str = "everysec") -> None:
        self.directory, self.password, self.fsync = directory, password, fsync
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def shown_url(self) -> str:
        """The URL as aury-tasks shows it: the password masked."""
        return f"redis://:***@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again, on the same port and data) and wait until it answers."""
        args = [
            find_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", self.fsync,
            "--save", "", "--maxmemory-policy", "noeviction", "--requirepass", self.password,
            "--logfile", str(self.directory / "server.log"),
            # DEBUG SLEEP stalls the server (scenario 6); "local": from loopback connections only.
            "--enable-debug-command", "local",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.log_tail()}")
            time.sleep(0.02)

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything."""
        self._signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM: the server writes its AOF and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def pause(self) -> None:
        """SIGSTOP: the server stops answering, its connections stay open."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "server.log").read_text(errors="replace")[-2000:]
        return ""

    def _signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signum)


@dataclass
class Tally:
    """What became of the tasks a scenario sent, from the counts the tasks kept.

    ``completed``: tags whose work was done at least once; ``duplicates``: completions beyond a
    tag's first (at-least-once allows them after a crash); ``dead_lettered``: tags given up on
    (expected by the scenario); ``lost``: neither done nor dead-lettered.
    """

    sent: int
    completed: int
    dead_lettered: int
    duplicates: int
    lost_tags: list[str]

    @property
    def lost(self) -> int:
        return len(self.lost_tags)

    @classmethod
    def read(cls, client: redis.Redis, tags: Iterable[str], dead_tags: Iterable[str] = ()) -> Tally:
        tags, dead = list(tags), set(dead_tags)
        done = [int(value or 0) for value in client.hmget("rel:done", tags)] if tags else []
        completed = sum(1 for runs in done if runs)
        lost = [tag for tag, runs in zip(tags, done, strict=True) if not runs and tag not in dead]
        return cls(
            sent=len(tags),
            completed=completed,
            dead_lettered=len(dead & set(tags)),
            duplicates=sum(runs - 1 for runs in done if runs > 1),
            lost_tags=lost,
        )


@dataclass
class Figures:
    """One scenario's row in the report."""

    scenario: str
    sent: int = 0
    completed: int = 0
    dead_lettered: int = 0
    lost: int = 0
    duplicates: int = 0
    #: Seconds from the fault to the system being whole again (every task done, or the worker back).
    recovery_s: float | None = None
    note: str = ""
    #: ``passed``, ``failed`` or ``error`` (set after the test).
    outcome: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, tally: Tally) -> Figures:
        """Take the counts of ``tally`` (added to any already taken)."""
        self.sent += tally.sent
        self.completed += tally.completed
        self.dead_lettered += tally.dead_lettered
        self.lost += tally.lost
        self.duplicates += tally.duplicates
        return self

    def write(self) -> None:
        """Append this row to the report file, if ``run.py`` asked for one."""
        path = os.environ.get(REPORT_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as report:
                report.write(json.dumps(asdict(self)) + "\n")


def wait_for(check: Any, *, timeout: float, what: str, every: float = 0.05) -> Any:
    """``check()``'s first truthy value within ``timeout`` seconds, or an AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def done_count(client: redis.Redis) -> int:
    """How many tags have completed at least once."""
    return int(client.hlen("rel:done"))
