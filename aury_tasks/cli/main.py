"""The ``aum`` command group."""

from __future__ import annotations

from pathlib import Path

import click

from .. import __version__
from .context import AumContext, AumGroup
from .send import send
from .tasks import tasks
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
      aum worker                     run a worker on every queue
      aum worker -q emails -c 8      8 threads on the emails queue
      aum tasks                      list the discovered tasks
      aum send send_welcome_email '["42"]'

    \b
    Exit codes:
      0 success   1 failure   2 bad setting or input   3 a task module failed to import
      4 broker unreachable
    """
    ctx.obj = AumContext(env_file=env_file)


main.add_command(worker)
main.add_command(tasks)
main.add_command(send)
