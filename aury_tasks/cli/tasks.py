"""``aum tasks``: the table of discovered tasks."""

from __future__ import annotations

import click

from .context import AumContext, echo_table, modules_option, pass_context


@click.command(short_help="List the discovered tasks and their options.")
@modules_option
@click.option("-q", "--queue", default=None, help="Only tasks of this queue.")
@pass_context
def tasks(aum: AumContext, modules_dir: str | None, queue: str | None) -> None:
    """List the tasks found in the task modules: name, queue, retries, timeout, module.

    Nothing is sent and no broker is contacted.
    """
    tm = aum.with_task_modules(modules_dir, logs=False)
    found = [t for t in tm.tasks.values() if queue is None or t.queue_name == queue]
    if not found:
        click.echo(f"no tasks found under {aum.settings.modules_dir}/", err=True)
        return
    rows = [
        (
            task.name,
            task.queue_name,
            task.max_retries,
            f"{task.timeout:g}s",
            "async" if task.is_async else "sync",
            task.fn.__module__,
        )
        for task in sorted(found, key=lambda t: (t.queue_name, t.name))
    ]
    echo_table(("NAME", "QUEUE", "RETRIES", "TIMEOUT", "KIND", "MODULE"), rows)
