"""Fixtures of the unit tests: an in-memory broker, and clean-up of global state some tests touch."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import dramatiq
import pytest
from loguru import logger

from aury_tasks import TaskManager


@pytest.fixture
def memory_tm() -> TaskManager:
    """The default TaskManager in producer mode on Dramatiq's StubBroker (``memory://``)."""
    tm = TaskManager.get_instance()
    tm.initialize(broker_url="memory://")
    return tm


@pytest.fixture
def worker_tm() -> TaskManager:
    """The default TaskManager in worker mode on Dramatiq's StubBroker: tasks become actors."""
    tm = TaskManager.get_instance()
    tm.initialize(run_mode="worker", broker_url="memory://")
    return tm


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo ``setup_logging``: loguru's sinks and the stdlib root logger's handlers and level."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    logger.remove()
    logger.add(sys.stderr)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def forget_task_modules(tmp_path: Path) -> Iterator[None]:
    """Un-import the modules a test imported from ``tmp_path`` and restore ``sys.path``."""
    path, before = sys.path[:], set(sys.modules)
    yield
    root = str(tmp_path)
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None)
        if file is None or file.startswith(root):  # None: the namespace package of a modules dir
            del sys.modules[name]
    sys.path[:] = path


@pytest.fixture
def stub_worker(worker_tm: TaskManager) -> Iterator[Callable[[], dramatiq.Worker]]:
    """Start a Dramatiq worker thread pool on the stub broker of ``worker_tm``; stopped after the test.

    Declare the tasks first, then call ``stub_worker()``; wait with ``broker.join(queue)`` and
    ``worker.join()``.
    """
    workers: list[dramatiq.Worker] = []

    def start() -> dramatiq.Worker:
        worker = dramatiq.Worker(worker_tm.broker, worker_timeout=100, worker_threads=2)
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
