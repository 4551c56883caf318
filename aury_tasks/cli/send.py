"""``aum send``: enqueue a task from the shell."""

from __future__ import annotations

import json
from typing import Any

import click

from .context import AumContext, modules_option, pass_context
from .follow import follow_progress, timeout_seconds, wait_for_result, wait_option
from .ledger import echo_json, reaching_ledger


def parse_json(text: str, hint: str, what: str, expected: type, example: str) -> Any:
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
@modules_option
@wait_option(
    "Wait for the task to end, at most SECONDS (e.g. 30, 5m), showing its progress on standard"
    " error, then print its result as JSON. A bare --wait has no limit."
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
    wait: float | None,
) -> None:
    """Enqueue TASK with ARGS_JSON (a JSON array) and print its task id.

    TASK is a registered name (see aum tasks) or, when unambiguous, the bare function name.
    The task id is printed on standard output, or with --wait, on standard error before the
    result. With --wait, exit status is 1 (one line on standard error) when the task fails,
    is dead-lettered, cancelled or expires, or the wait times out; Ctrl-C stops waiting, not
    the task.

    \b
    Examples:
      aum send send_welcome_email '["42"]'
      aum send modules.reports.tasks.build_report --kwargs '{"day": "2026-11-22"}' --delay 60
      aum send build_report --kwargs '{"day": "2026-11-22"}' --wait 5m | jq .rows
    """
    args = parse_json(args_json, "ARGS_JSON", "array", list, "'[\"42\", 3]'")
    kwargs = parse_json(kwargs_json, "--kwargs", "object", dict, '\'{"user_id": "42"}\'')
    tm = aum.with_task_modules(modules_dir)
    task = tm.get_task(task_name)
    handle = task.send_with_options(args=args, kwargs=kwargs, queue_name=queue, delay=delay)
    where = f"queue {handle.queue_name}" + (f", due {handle.eta:%Y-%m-%d %H:%M:%S} UTC" if handle.eta else "")
    click.echo(f"sent {task.name} to {where} via {tm.broker_info.describe()}", err=True)
    if wait is None or handle.eager:
        click.echo(handle.id)
        return
    click.echo(f"task id {handle.id}; waiting for it to end (Ctrl-C stops waiting, not the task)", err=True)
    with reaching_ledger(tm):
        follow_progress(tm, handle.id, timeout_seconds(wait))
        echo_json(wait_for_result(tm, handle.id, 0))
