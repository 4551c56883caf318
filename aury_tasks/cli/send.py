"""``aum send``: enqueue a task from the shell."""

from __future__ import annotations

import json
from typing import Any

import click

from ..discovery import import_task_modules
from .context import AumContext, pass_context


def _parse_json(text: str, hint: str, what: str, expected: type, example: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not valid JSON ({exc.msg} at column {exc.colno}); e.g. {example}", param_hint=hint
        ) from None
    if not isinstance(value, expected):
        raise click.BadParameter(f"must be a JSON {what}, e.g. {example}", param_hint=hint)
    return value


@click.command()
@click.argument("task_name", metavar="TASK")
@click.argument("args_json", metavar="[ARGS_JSON]", required=False, default="[]")
@click.option(
    "--kwargs", "kwargs_json", default="{}", metavar="JSON", help="Keyword arguments as a JSON object."
)
@click.option("--queue", default=None, help="Send to this queue instead of the task's own.")
@click.option("--delay", type=click.FloatRange(0), default=None, help="Seconds before the task may run.")
@click.option(
    "--modules",
    "modules_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory of task modules.  [default: TASK_MODULES_DIR]",
)
@pass_context
def send(
    aum: AumContext,
    task_name: str,
    args_json: str,
    kwargs_json: str,
    queue: str | None,
    delay: float | None,
    modules_dir: str | None,
) -> None:
    """Enqueue TASK with ARGS_JSON (a JSON array) and print its task id.

    TASK is a registered name (see aum tasks) or, when unambiguous, the bare function name.

    \b
    Examples:
      aum send send_welcome_email '["42"]'
      aum send modules.reports.tasks.build_report --kwargs '{"day": "2026-11-22"}' --delay 60
    """
    args = _parse_json(args_json, "ARGS_JSON", "array", list, "'[\"42\", 3]'")
    kwargs = _parse_json(kwargs_json, "--kwargs", "object", dict, '\'{"user_id": "42"}\'')
    if modules_dir is not None:
        aum.overrides["modules_dir"] = modules_dir
    settings = aum.settings
    aum.setup_logging()
    tm = aum.task_manager()
    import_task_modules(settings.modules_dir)
    task = tm.get_task(task_name)
    handle = task.send_with_options(args=args, kwargs=kwargs, queue_name=queue, delay=delay)
    where = f"queue {handle.queue_name}" + (f", due {handle.eta:%Y-%m-%d %H:%M:%S} UTC" if handle.eta else "")
    click.echo(f"sent {task.name} to {where} via {tm.broker_info.describe()}", err=True)
    click.echo(handle.id)
