"""``aum scheduler``: fire the scheduled jobs (the one process of all that holds the lease does)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import click
from loguru import logger

from .. import __version__
from ..alerts.service import alert_loop
from ..scheduler.manager import SchedulerManager
from ..scheduler.runner import SchedulerRunner
from ..tasks.manager import TaskManager
from .context import AumContext, modules_option, pass_context
from .ledger import reaching_ledger
from .server_checks import reach_broker

#: The lease lasts this many seconds unless renewed; it is renewed every fifth of it.
DEFAULT_LEASE_TTL = 3.0


def lease_ttl_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--lease-ttl``, shared by ``aum scheduler`` and ``aum run``."""
    return click.option(
        "--lease-ttl",
        type=click.FloatRange(1, 300),
        default=DEFAULT_LEASE_TTL,
        help="Seconds the leader lease lasts unless renewed (every fifth of it): how soon another "
        "scheduler takes over a dead one.",
    )(command)


def start_scheduler(tm: TaskManager, lease_ttl: float) -> SchedulerRunner:
    """Start a :class:`SchedulerRunner` for ``tm``'s scheduler (task modules imported already)."""
    scheduler = SchedulerManager.get_instance(tm.name)
    runner = SchedulerRunner(scheduler, lease_ttl=lease_ttl, renew_interval=lease_ttl / 5,
                             while_leading=[alert_loop(scheduler)])  # fmt: skip
    broker = tm.broker_info.describe()
    logger.info("aury-tasks {} scheduler {}, broker: {}", __version__, runner.holder, broker)
    runner.start()
    logger.info("scheduler ready: {} scheduled job(s)", len(runner.store.all()))
    return runner


@click.command(context_settings={"show_default": True})
@modules_option
@lease_ttl_option
@pass_context
def scheduler(aum: AumContext, modules_dir: str | None, lease_ttl: float) -> None:
    """Run a scheduler: send the tasks of the scheduled jobs when their triggers fire.

    Imports the task modules (for their @scheduled_task schedules, which are created or updated
    now), then competes for the leader lease in Redis. Run as many as you like, on as many
    hosts: the one that holds the lease fires, the others wait and take over within
    --lease-ttl seconds if it dies, sending the ticks planned meanwhile (within each job's
    misfire grace time). Every fire is claimed in Redis first, so no tick is sent twice. The
    scheduler only sends messages; workers run the tasks.

    SIGTERM or Ctrl-C stops it and gives the lease up, so another scheduler leads at once.

    \b
    Examples:
      aum scheduler
      aum scheduler --lease-ttl 10
    """
    tm = aum.with_task_modules(modules_dir)
    reach_broker(tm)  # wrong credentials: exit 2; unreachable: exit 4
    with reaching_ledger(tm):
        SchedulerManager.get_instance(tm.name).store.client.ping()  # one line if it is missing or down
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for stop_signal in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(stop_signal, on_signal)
    runner = start_scheduler(tm, lease_ttl)
    while not stop.wait(1.0):
        pass
    logger.info("scheduler stopping")
    runner.stop()
