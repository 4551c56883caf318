"""Setting up a worker process that Dramatiq's supervisor started (kept apart from the CLI).

The supervisor (:mod:`aury_tasks.worker.supervisor`) starts each worker process with
:func:`boot_worker_process`, which takes the set-up ``aum worker`` left it
(:class:`~aury_tasks.worker.setup.WorkerSetup`), sets up logging, imports the task modules and
returns the broker. Nothing here imports click or the ``aum`` commands: a worker process loads
only what running tasks needs.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from types import FrameType

import dramatiq
from dramatiq import cli as dramatiq_cli
from dramatiq.brokers.redis import RedisBroker
from loguru import logger

from ..broker.redis.dramatiq_internals import build_cli_workers_with
from ..config.logging import setup_logging
from ..core.run_mode import RunMode
from ..tasks.manager import TaskManager
from .discovery import import_task_modules
from .lanes import QueueLimitedWorker
from .recycling import Recycler, operator_stop, supervised
from .setup import WorkerSetup

#: A repeated stop signal within this many seconds is the same stop request.
_REPEAT_WINDOW = 2.0


def boot_process(setup: WorkerSetup) -> TaskManager:
    """Settings, logging, TaskManager and task modules in a process Dramatiq's supervisor started.

    ``setup``: what ``aum worker`` handed over (:meth:`WorkerSetup.take`). It imports the task
    modules unless it inherited them (forked from a process that had them). Its logs go to the
    pipe Dramatiq gives it in place of standard error.
    """
    settings = setup.settings
    setup_logging(settings.log_level, json=settings.log_json, stream=sys.stderr)
    tm = TaskManager.get_instance()
    if not tm.is_initialized:
        tm.initialize(run_mode=RunMode.WORKER, settings=settings)
        import_task_modules(settings.modules_dir)
    return tm


def boot_worker_process() -> dramatiq.Broker:
    """Set up one worker process; Dramatiq's supervisor calls this in each child.

    Raises:
      ConfigError: the process has no worker set-up (it was not started by ``aum worker``).
    """
    setup = WorkerSetup.take()
    tm = boot_process(setup)
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
    for queue_name in setup.queues:
        tm.broker_for_queue(queue_name)  # queues no task declares, given with -q
    _use_queue_limits(setup.queue_limits)
    dramatiq.set_broker(tm.broker)
    return tm.broker


def _use_queue_limits(limits: Mapping[str, tuple[int, int]]) -> None:
    """Have Dramatiq's worker process build a :class:`QueueLimitedWorker` if some queue has a limit.

    Dramatiq's ``worker_process`` builds ``Worker(broker, queues=..., worker_threads=...)`` right
    after it has loaded the broker (this function's caller): in this process only, that name is
    the worker with lanes, the rest (signals, stop, requeue, timeout) stays Dramatiq's.
    """
    if not limits:
        return
    build_cli_workers_with(functools.partial(QueueLimitedWorker, limits=limits))


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
