"""``aum dlq``: the dead letters of a queue, listed, shown, requeued and purged."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

import click
from dramatiq.common import q_name

from ..ledger.dead_letters import DeadLetter, DeadLetterQueue
from ..tasks.manager import TaskManager
from .context import echo_table
from .ledger import echo_fields, echo_json, pass_ledger, short_name
from .times import format_moment

_QUEUE_HELP = "The queue whose dead letters to use.  [default: TASK_QUEUE_NAME]"
_ID_QUEUE_HELP = "The queue of the dead letters.  [default: the task's queue, else TASK_QUEUE_NAME]"


def _queue_option(help_text: str = _QUEUE_HELP) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("-q", "--queue", "queue_name", metavar="QUEUE", help=help_text)


@click.group()
def dlq() -> None:
    """List, show, requeue and purge dead letters.

    A message lands in its queue's dead letters when Dramatiq gives up on it: its task failed on
    every retry or raised a PermanentError, its task is unknown to the worker, or it waited
    longer than its max age. Dead letters are kept 7 days. Requeuing sends a dead letter again
    as a new task with the same arguments; aum status shows the link both ways.

    \b
    Examples:
      aum dlq list -q emails
      aum dlq show 3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b -q emails
      aum dlq requeue -q emails --all
      aum dlq purge -q emails --yes
    """


@dlq.command("list", short_help="List a queue's dead letters, newest first.")
@_queue_option()
@click.option("-n", "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="Dead letters to show.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the dead letters as JSON.")
@pass_ledger
def list_dead_letters(tm: TaskManager, queue_name: str | None, limit: int, as_json: bool) -> None:
    """List a queue's dead letters, newest first: id, task, when, how it ended and why.

    A line on standard error says how many the queue holds in all.
    """
    letters = tm.dead_letters(queue_name)
    found = letters.list(limit=limit)
    if as_json:
        echo_json([dataclasses.asdict(letter) for letter in found])
        return
    if not found:
        click.echo(f"no dead letters in queue {letters.queue_name}", err=True)
        return
    rows = [
        (letter.task_id, short_name(letter.task_name) or "-", format_moment(letter.dead_at),
         letter.status or "-", _why(letter))
        for letter in found
    ]  # fmt: skip
    echo_table(("ID", "TASK", "DEAD AT", "STATUS", "ERROR"), rows)
    click.echo(f"showing {len(found)} of {len(letters)} dead letters in queue {letters.queue_name}", err=True)


@dlq.command("show", short_help="Show one dead letter with its arguments and error.")
@click.argument("task_id", metavar="ID")
@_queue_option(_ID_QUEUE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the dead letter as JSON.")
@pass_ledger
def show_dead_letter(tm: TaskManager, task_id: str, queue_name: str | None, as_json: bool) -> None:
    """Show dead letter ID: its task, arguments, when it died and the error that killed it.

    Exit status is 1 when the queue holds no dead letter with that id.
    """
    letter = tm.dead_letters(queue_name or _queue_of(tm, task_id)).get(task_id)
    if as_json:
        echo_json(dataclasses.asdict(letter))
        return
    echo_fields(
        [
            ("id", letter.task_id),
            ("task", letter.task_name),
            ("queue", letter.queue_name),
            ("dead at", format_moment(letter.dead_at, ago=True)),
            ("status", letter.status or "-"),
            ("error", _why(letter)),
            ("args", _json(letter.args)),
            ("kwargs", _json(letter.kwargs)),
        ]
    )


@dlq.command("requeue", short_help="Send dead letters again as new tasks.")
@click.argument("task_ids", metavar="[ID]...", nargs=-1)
@_queue_option(_ID_QUEUE_HELP)
@click.option("--all", "everything", is_flag=True, help="Requeue every dead letter of the queue.")
@pass_ledger
def requeue(tm: TaskManager, task_ids: tuple[str, ...], queue_name: str | None, everything: bool) -> None:
    """Send dead letters again as new tasks: the ones given by ID, or --all.

    Each new task gets a new id, printed one per line on standard output (old id, a space, new
    id); its record links to the old one. A requeued dead letter leaves the dead letters.

    Exit status is 1 when an ID given is not a dead letter of the queue (nothing is requeued
    then).
    """
    if bool(task_ids) == everything:
        raise click.UsageError("give the IDs of the dead letters to requeue, or --all (not both)")
    batches: list[tuple[DeadLetterQueue, list[str] | None]] = []
    if everything:
        batches.append((tm.dead_letters(queue_name), None))
    else:
        by_queue: dict[str | None, list[str]] = {}
        for task_id in task_ids:
            by_queue.setdefault(queue_name or _queue_of(tm, task_id), []).append(task_id)
        batches += [(tm.dead_letters(queue), ids) for queue, ids in by_queue.items()]
        for letters, ids in batches:
            for task_id in ids or ():
                letters.get(task_id)  # TaskRecordNotFound (exit 1) before anything is sent
    for letters, ids in batches:
        handles = letters.requeue(ids)
        for old_id, handle in handles.items():
            click.echo(f"{old_id} {handle.id}")
        click.echo(f"requeued {len(handles)} dead letter(s) to queue {letters.queue_name}", err=True)


@dlq.command("purge")
@_queue_option()
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ledger
def purge(tm: TaskManager, queue_name: str | None, yes: bool) -> None:
    """Delete every dead letter of a queue, for good.

    Asks first on a terminal unless --yes; without a terminal, --yes is required.
    """
    letters = tm.dead_letters(queue_name)
    count = len(letters)
    if count and not yes:
        if not _interactive():
            raise click.UsageError("purge deletes for good: add --yes to confirm")
        click.confirm(f"delete {count} dead letter(s) of queue {letters.queue_name} for good?", abort=True)
    click.echo(f"deleted {letters.purge()} dead letter(s) of queue {letters.queue_name}")


def _queue_of(tm: TaskManager, task_id: str) -> str | None:
    """The queue the ledger says ``task_id`` was sent to (``None``: unknown, use the default)."""
    record = tm.store.get(task_id)
    return q_name(record.queue_name) if record is not None else None


def _why(letter: DeadLetter) -> str:
    if letter.error_type:
        return f"{letter.error_type}: {letter.error_message}"
    return letter.error_message or "-"


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _interactive() -> bool:
    return sys.stdin.isatty()
