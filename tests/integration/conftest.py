"""Fixtures of the integration tests: the events fixture tasks record, a restartable private server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from aury_tasks.broker.embedded import EmbeddedServer, start_server

from .events import EventLog


@pytest.fixture
def events(redis_client: redis.Redis) -> EventLog:
    """The events the fixture tasks record in the (flushed) test Redis."""
    return EventLog(redis_client)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Restartable:
    """A private server (the embedded one, AOF on) that can be stopped and started again where it was."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, _free_port()
        self.server: EmbeddedServer = start_server(directory, port=self.port)
        self.url = self.server.url

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server = start_server(self.directory, port=self.port)


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Restartable]:
    """A private server of the test's own, to stop and start again."""
    server = Restartable(tmp_path / "private-redis")
    yield server
    server.stop()
