"""The ``aum`` command group."""

from __future__ import annotations

from pathlib import Path

import click

from .. import __version__
from .alerts import alerts
from .context import AumContext, AumGroup
from .dlq import dlq
from .doctor import doctor
from .listing import cleanup, list_tasks, queues, stats
from .run import run
from .schedule import schedule
from .scheduler import scheduler
from .send import send
from .serve import serve
from .state import cancel, result, retry, status
from .tasks import tasks
from .top import top
from .worker import worker


@click.group(cls=AumGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="aum (aury-tasks)")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read settings from this file instead of ./.env.",
)
@click.pass_context
def main(ctx: click.Context, env_file: Path | None) -> None:
    """aury-tasks: background tasks, retries and scheduled jobs on Dramatiq.

    Tasks live in TASK_MODULES_DIR/<name>/tasks/ (default modules/). Settings come from
    TASK_* environment variables and ./.env; with no TASK_BROKER_URL an embedded Redis
    is started under .aum/.

    \b
    Examples:
      aum run                        a worker and the scheduler: the whole system
      aum worker                     run a worker on every queue
      aum worker -q emails -c 8      8 threads on the emails queue
      aum tasks                      list the discovered tasks
      aum send send_welcome_email '["42"]'
      aum status ID --follow         a task's record, its progress as it happens
      aum list --status failure      what failed, newest first
      aum queues                     every queue: pending, running, dead, workers
      aum top                        a live view of queues, rates and running tasks
      aum schedule list              the scheduled jobs, their next and last runs
      aum serve                      the REST API, dashboard and /metrics on :8686
      aum doctor                     check the settings, Redis, task modules and schedules

    \b
    Exit codes:
      0 success   1 failure (a task failed, an unknown task id …)   2 bad setting or input
      3 a task module failed to import   4 broker unreachable
    """
    ctx.obj = AumContext(env_file=env_file)


COMMANDS = (run, worker, scheduler, schedule, tasks, send, status, result, cancel, retry, list_tasks, stats,
            queues, top, dlq, cleanup, serve, alerts, doctor)  # fmt: skip
for command in COMMANDS:
    main.add_command(command)
