"""Setting up a worker process that Dramatiq's supervisor started (kept apart from the CLI).

The supervisor (:mod:`aury_tasks.worker.supervisor`) starts each worker process with
:func:`boot_worker_process`, which reads the settings from the environment ``aum worker`` left,
sets up logging, imports the task modules and returns the broker. Nothing here imports click or
the ``aum`` commands: a worker process loads only what running tasks needs.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import dramatiq
from dramatiq import cli as dramatiq_cli
from dramatiq.brokers.redis import RedisBroker
from loguru import logger

from ..config.logging import setup_logging
from ..config.snapshot import SNAPSHOT_ENV, SettingsSnapshot
from ..core.run_mode import RunMode
from ..tasks.manager import TaskManager
from .discovery import import_task_modules
from .lanes import QueueLimitedWorker
from .recycling import Recycler, operator_stop, supervised

if TYPE_CHECKING:
    from ..config.snapshot import Settings

#: Environment variable carrying the queues to the worker processes.
QUEUES_ENV = "AURY_TASKS_WORKER_QUEUES"
#: Environment variable carrying the limited queues (JSON: name -> [threads, prefetch]).
QUEUE_LIMITS_ENV = "AURY_TASKS_QUEUE_LIMITS"
#: A repeated stop signal within this many seconds is the same stop request.
_REPEAT_WINDOW = 2.0


def boot_process() -> TaskManager:
    """Settings, logging, TaskManager and task modules in a process Dramatiq's supervisor started.

    It imports the task modules unless it inherited them (forked from a process that had them).
    Its logs go to the pipe Dramatiq gives it in place of standard error.
    """
    settings = _handed_settings()
    setup_logging(settings.log_level, json=settings.log_json, stream=sys.stderr)
    tm = TaskManager.get_instance()
    if not tm.is_initialized:
        tm.initialize(run_mode=RunMode.WORKER, settings=settings)
        import_task_modules(settings.modules_dir)
    return tm


def _handed_settings() -> Settings:
    """The settings ``aum worker`` checked and handed over, else read (and checked) here."""
    snapshot = os.environ.pop(SNAPSHOT_ENV, None)  # not left for the tasks' own subprocesses
    if snapshot is not None:
        return SettingsSnapshot.from_json(snapshot)
    from ..config.settings import TaskSettings

    env_file = os.environ.get("AURY_TASKS_ENV_FILE")
    return TaskSettings.load(**({"_env_file": env_file} if env_file else {}))


def boot_worker_process() -> dramatiq.Broker:
    """Set up one worker process; Dramatiq's supervisor calls this in each child."""
    tm = boot_process()
    if isinstance(tm.broker, RedisBroker):
        # Forked from `aum worker`, it shares its parent's broker: it needs an id of its own, for
        # its heartbeat and the messages it fetches (a sibling's death is not its own, nor hidden by it).
        tm.broker.broker_id = str(uuid.uuid4())
    if tm.settings.metrics_port:  # only then is prometheus_client imported
        from .metrics import worker_metrics_middleware

        tm.broker.add_middleware(worker_metrics_middleware())
    stop = _install_stop_handler()
    settings = tm.settings
    if (settings.max_tasks_per_child or settings.max_memory_per_child) and supervised():
        recycler = Recycler(max_tasks=settings.max_tasks_per_child,
                            max_memory_mib=settings.max_memory_per_child, stop=stop)  # fmt: skip
        tm.broker.add_middleware(recycler)
    for queue_name in filter(None, os.environ.get(QUEUES_ENV, "").split(",")):
        tm.broker_for_queue(queue_name)  # queues no task declares, given with -q
    _use_queue_limits()
    dramatiq.set_broker(tm.broker)
    return tm.broker


def _use_queue_limits() -> None:
    """Have Dramatiq's worker process build a :class:`QueueLimitedWorker` if some queue has a limit.

    Dramatiq's ``worker_process`` builds ``Worker(broker, queues=..., worker_threads=...)`` right
    after it has loaded the broker (this function's caller): in this process only, that name is
    the worker with lanes, the rest (signals, stop, requeue, timeout) stays Dramatiq's.
    """
    given = os.environ.get(QUEUE_LIMITS_ENV)
    if not given:
        return
    limits = {name: (int(threads), int(prefetch)) for name, (threads, prefetch) in json.loads(given).items()}
    dramatiq_cli.Worker = functools.partial(QueueLimitedWorker, limits=limits)  # type: ignore[misc,assignment]


def _install_stop_handler() -> Callable[[], None]:
    """Make a worker process stop gracefully on SIGTERM even when the signal arrives twice.

    ``timeout``, ``kill -- -PGID`` and systemd's default ``KillMode=control-group`` signal the
    whole process group, so a worker process gets SIGTERM from there and again from the
    supervisor that forwards it. Dramatiq takes the second one for "kill now" and calls
    ``sys.exit`` in the main thread, which then waits forever for the worker threads. Here a
    repeat within a short window is ignored, and a later one (a second Ctrl-C, an operator who
    insists) ends the process at once: its unacknowledged messages are delivered again.

    Returns the graceful stop itself (Dramatiq's, started at most once), callable from any
    thread: what :class:`~aury_tasks.worker.recycling.Recycler` calls. A stop signal that comes after it
    is the operator's: it makes the process exit as stopped (it is not replaced), and a repeat of
    it still ends the process at once.
    """
    graceful = signal.getsignal(signal.SIGTERM)
    first_at: float | None = None
    started = False
    lock = threading.Lock()

    def stop_gracefully() -> None:
        nonlocal started
        with lock:
            if started or not callable(graceful):
                return
            started = True
        graceful(signal.SIGTERM, None)

    def on_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal first_at
        now = time.monotonic()
        operator_stop()
        if first_at is None:
            first_at = now
            stop_gracefully()
        elif now - first_at >= _REPEAT_WINDOW:
            logger.warning("stopping now: unfinished tasks will be delivered again")
            os._exit(dramatiq_cli.RET_KILLED)

    if callable(graceful):
        for stop_signal in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop_signal, on_stop)
    return stop_gracefully
