"""``aum run``: a worker and a scheduler under one command (development and small deployments)."""

from __future__ import annotations

import os
import signal
import time

import click
import redis
from loguru import logger

from ..core.errors import AuryTasksError
from ..core.redaction import redact_text
from ..scheduler.manager import SchedulerManager
from ..tasks.manager import TaskManager
from ..worker.process import boot_process
from ..worker.setup import WorkerSetup
from .context import AumContext, pass_context
from .ledger import reaching_ledger
from .scheduler import DEFAULT_LEASE_TTL, lease_ttl_option, start_scheduler
from .worker import WorkerOptions, run_worker, worker_options


@click.command(context_settings={"show_default": True})
@worker_options
@lease_ttl_option
@pass_context
def run(aum: AumContext, options: WorkerOptions, lease_ttl: float) -> None:
    """Run a worker and a scheduler together: everything the discovered modules need.

    The same as `aum worker` with the same options, plus a scheduler process under the same
    supervisor (a Dramatiq fork process) that sends the scheduled jobs' tasks. With no broker
    configured it uses the embedded Redis, so this one command runs the whole system on a
    fresh machine. In production, run `aum worker` and `aum scheduler` apart, so each can be
    scaled and restarted on its own; `aum run` can also be started several times: only one
    scheduler of all leads.

    SIGTERM or Ctrl-C stops both: running tasks get --shutdown-timeout seconds, the scheduler
    gives its lease up.

    \b
    Examples:
      aum run
      aum run -q emails,default -c 16
    """
    run_worker(aum, options, forks=[f"{__name__}:scheduler_process"], role="worker and scheduler",
               check=reach_schedule_store, scheduler_lease_ttl=lease_ttl)  # fmt: skip


def reach_schedule_store(tm: TaskManager) -> None:
    """Fail now, in one line, if the scheduled jobs' Redis is missing (exit 2) or unreachable (exit 4)."""
    with reaching_ledger(tm):
        SchedulerManager.get_instance(tm.name).store.client.ping()


def scheduler_process() -> int:
    """The scheduler of ``aum run``, in a process of its own; Dramatiq's supervisor runs it.

    Its stop signal arrives as ``SystemExit`` (Dramatiq's handler), which gives the lease up.
    """
    try:
        setup = WorkerSetup.take()
        tm = boot_process(setup)
        lease_ttl = setup.scheduler_lease_ttl
        runner = start_scheduler(tm, DEFAULT_LEASE_TTL if lease_ttl is None else lease_ttl)
    except Exception as exc:  # whatever it is, the worker must not go on without its scheduler
        known = isinstance(exc, (AuryTasksError, redis.RedisError))
        logger.opt(exception=None if known else exc).critical(
            "the scheduler could not start ({}); stopping aum run", redact_text(str(exc))
        )
        os.kill(os.getppid(), signal.SIGTERM)  # Dramatiq's supervisor stops the workers gracefully
        return 1
    try:
        while True:
            time.sleep(3600)
    finally:
        logger.info("scheduler stopping")
        runner.stop()
