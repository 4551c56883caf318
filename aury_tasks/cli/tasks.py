"""``aum tasks``: the table of discovered tasks."""

from __future__ import annotations

import click

from ..discovery import import_task_modules
from .context import AumContext, echo_table, pass_context


@click.command()
@click.option(
    "--modules",
    "modules_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory of task modules.  [default: TASK_MODULES_DIR]",
)
@click.option("-q", "--queue", default=None, help="Only tasks of this queue.")
@pass_context
def tasks(aum: AumContext, modules_dir: str | None, queue: str | None) -> None:
    """List the tasks found in the task modules: name, queue, retries, timeout, module.

    Nothing is sent and no broker is contacted.
    """
    if modules_dir is not None:
        aum.overrides["modules_dir"] = modules_dir
    settings = aum.settings
    tm = aum.task_manager()
    import_task_modules(settings.modules_dir)
    found = [t for t in tm.tasks.values() if queue is None or t.queue_name == queue]
    if not found:
        click.echo(f"no tasks found under {settings.modules_dir}/", err=True)
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
