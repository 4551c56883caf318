"""``aum status``, ``aum result``, ``aum cancel``, ``aum retry``: one task, by its id."""

from __future__ import annotations

import json
from typing import Any

import click

from ..core.status import TaskStatus
from ..ledger.records import TaskRecord
from ..tasks.manager import TaskManager
from ..workflows.state import is_workflow
from ..workflows.tree import load_tree
from .follow import describe_progress, follow_progress, timeout_seconds, wait_for_result, wait_option
from .ledger import echo_fields, echo_json, pass_ledger
from .times import format_duration, format_moment

#: Longest result shown by ``aum status`` (``aum result`` prints all of it).
_RESULT_PREVIEW = 100


def record_fields(record: TaskRecord) -> list[tuple[str, Any]]:
    """What ``aum status`` shows of a record: every field that has a value, times in UTC."""
    fields: list[tuple[str, Any]] = [
        ("id", record.id),
        ("task", record.task_name),
        ("queue", record.queue_name),
        ("status", record.status.value),
        ("attempt", record.attempt),
        ("enqueued", format_moment(record.enqueued_at, ago=True)),
    ]
    optional: list[tuple[str, Any]] = [
        ("due", record.eta and format_moment(record.eta, ago=True)),
        ("expires", record.expires_at and format_moment(record.expires_at, ago=True)),
        ("started", record.started_at and format_moment(record.started_at, ago=True)),
        ("finished", record.finished_at and format_moment(record.finished_at, ago=True)),
        ("duration", record.duration is not None and format_duration(record.duration)),
        ("worker", record.worker),
        ("progress", record.progress and describe_progress(record.progress).strip()),
        ("result", record.status is TaskStatus.SUCCESS and _preview(record.result)),
        ("error", record.error_type and f"{record.error_type}: {record.error_message}"),
        ("reason", record.reason),
        ("errors", len(record.errors) > 1 and "\n".join(
            f"attempt {error.get('attempt')}: {error.get('type')}: {error.get('message')}"
            for error in record.errors
        )),
        ("workflow", record.workflow_id),
        ("retry of", record.retry_of),
        ("retried by", record.retried_by),
        ("metadata", record.metadata and json.dumps(record.metadata)),
    ]  # fmt: skip
    return fields + [(name, value) for name, value in optional if value]


def _preview(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _RESULT_PREVIEW else text[: _RESULT_PREVIEW - 1] + "…"


@click.command()
@click.argument("task_id", metavar="ID")
@click.option("-f", "--follow", is_flag=True, help="Show progress until the task ends, then its record.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON (with the traceback).")
@pass_ledger
def status(tm: TaskManager, task_id: str, follow: bool, as_json: bool) -> None:
    """Show what the ledger knows about task ID.

    Prints its task, queue, status, attempt, when it was enqueued, started and finished (UTC),
    how long it ran, the worker that ran it, its last progress report, its error and the tasks
    it retries or was retried by, then the traceback of a failure.

    With --follow, each progress report is shown on standard error as it is made (a bar on a
    terminal, one line each otherwise) until the task ends, then the final record is printed.
    Ctrl-C stops following, not the task.

    For a workflow (the id a chain, group or chord was sent with), prints its record and the
    tree of its steps, each with its status, id, duration and error.

    Exit status is 0 when the task succeeded or has not ended yet, 1 when it failed, was
    dead-lettered, cancelled or expired, or no task has that id.

    \b
    Examples:
      aum status 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b
      aum status 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b --follow
      aum status 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b --json | jq .errors
    """
    record = tm.task_record(task_id)
    if follow and not record.is_final:
        click.echo(f"following {task_id} ({record.status.value}); Ctrl-C stops following", err=True)
        follow_progress(tm, task_id)
        record = tm.task_record(task_id)
    tree = load_tree(tm, task_id) if is_workflow(record) else None
    if as_json:
        echo_json({**record.to_dict(), "workflow": tree.to_dict()} if tree else record.to_dict())
    elif tree is not None:
        echo_fields(
            [(name, value) for name, value in record_fields(record) if name not in ("queue", "attempt")]
        )
        click.echo()
        for line in tree.render()[1:]:
            click.echo(line)
    else:
        echo_fields(record_fields(record))
        if record.traceback and record.status is not TaskStatus.SUCCESS:
            click.echo()
            click.echo(record.traceback.rstrip())
    if record.is_final and record.status is not TaskStatus.SUCCESS:
        click.get_current_context().exit(1)


@click.command()
@click.argument("task_id", metavar="ID")
@wait_option("Wait for the task to end, at most SECONDS (e.g. 30, 5m); a bare --wait has no limit.")
@pass_ledger
def result(tm: TaskManager, task_id: str, wait: float | None) -> None:
    """Print the result of task ID as JSON on standard output.

    A task that returned nothing prints null. Without --wait, a task that has not ended yet is
    an error; with it, aum waits for the end (on the task's events, not by polling).

    Exit status is 0 with the result printed; 1, with one line on standard error, when the task
    failed (its error type and message), was dead-lettered, cancelled or expired, has not
    ended (without --wait), timed out (with --wait SECONDS), or no task has that id.

    \b
    Examples:
      aum result 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b
      aum result 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b --wait 60 | jq .rows
    """
    record = tm.task_record(task_id)
    if not record.is_final and wait is None:
        raise click.ClickException(
            f"task {task_id} is {record.status.value}: not finished (--wait waits for it)"
        )
    echo_json(wait_for_result(tm, task_id, timeout_seconds(wait)))


@click.command()
@click.argument("task_id", metavar="ID")
@pass_ledger
def cancel(tm: TaskManager, task_id: str) -> None:
    """Cancel task ID, durably.

    A pending or scheduled task will never run, even after a worker restart; a running task is
    interrupted (a sync task at once, an async one at its next await) and not retried. Its
    status is cancelled at once.

    For a workflow id, every step not yet finished is cancelled, and steps never started are
    marked cancelled.

    Exit status is 0 when the task was cancelled, 1 when it had already ended (the line says
    how) or no task has that id.

    \b
    Example:
      aum cancel 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b
    """
    if tm.cancel(task_id):
        click.echo(f"cancelled {task_id}")
        return
    ended = tm.task_status(task_id)
    raise click.ClickException(f"task {task_id} already ended ({ended.value}); nothing to cancel")


@click.command(short_help="Send a failed task again as a new task.")
@click.argument("task_id", metavar="ID")
@pass_ledger
def retry(tm: TaskManager, task_id: str) -> None:
    """Send task ID again, with the same arguments, and print the new task's id.

    Only a task that failed, was dead-lettered, cancelled or expired can be retried. The new task
    has a new id; aum status shows the link both ways (retry of, retried by). A dead letter of
    the old task is removed.

    Exit status is 0 with the new id printed; 1 when the task cannot be retried (it is pending,
    running or succeeded) or no task has that id.

    \b
    Example:
      aum retry 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b
    """
    handle = tm.retry(task_id)
    click.echo(f"sent {task_id} again as a new task on queue {handle.queue_name}", err=True)
    click.echo(handle.id)
