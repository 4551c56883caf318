"""Following a task from the shell: its progress on standard error, then its outcome.

Used by ``aum status --follow``, ``aum result --wait`` and ``aum send --wait``. Waiting rides on
the task's event channel (see :mod:`aury_tasks.ledger.events`), never on polling.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import click

from ..core.errors import TaskRecordNotFound
from ..core.status import TaskStatus
from ..ledger.records import Progress
from ..tasks.manager import TaskManager
from .times import Duration

#: Width of the progress bar drawn on a terminal.
_BAR_WIDTH = 30


def wait_option(help_text: str) -> Any:
    """``--wait [SECONDS]``: a bare ``--wait`` waits as long as it takes."""
    return click.option(
        "--wait",
        type=Duration(bare_seconds=True),
        is_flag=False,
        flag_value=math.inf,
        default=None,
        metavar="[SECONDS]",
        help=help_text,
    )


def timeout_seconds(wait: float | None) -> float | None:
    """The timeout for a ``--wait`` value: ``None`` (no limit) for a bare ``--wait``."""
    return None if wait is None or math.isinf(wait) else wait


def describe_progress(progress: Progress) -> str:
    """One progress report as text: `` 60%  3/5  step 3``."""
    parts = [f"{progress.percent:3.0f}%"]
    if progress.step is not None and progress.total_steps is not None:
        parts.append(f"{progress.step}/{progress.total_steps}")
    if progress.message:
        parts.append(progress.message)
    return "  ".join(parts)


def follow_progress(tm: TaskManager, task_id: str, timeout: float | None = None) -> TaskStatus:
    """Show each progress report of ``task_id`` on standard error until it ends.

    On a terminal a bar is redrawn on one line; otherwise (a pipe, a log) each report is one line.

    Returns:
      TaskStatus: the task's final status.

    Raises:
      TaskRecordNotFound: for an unknown id, or a record that expired meanwhile.
      click.ClickException: when ``timeout`` seconds pass first.
    """
    redraw = sys.stderr.isatty()
    subscription = tm.subscribe_progress(task_id, timeout=timeout)
    drawn = False
    try:
        for progress in subscription:
            if redraw:
                filled = round(_BAR_WIDTH * progress.percent / 100)
                bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
                click.echo(f"\r\x1b[2K[{bar}] {describe_progress(progress)}", err=True, nl=False)
                drawn = True
            else:
                click.echo(describe_progress(progress), err=True)
    except TimeoutError:
        raise _timed_out(tm, task_id, timeout) from None
    finally:
        if drawn:
            click.echo(err=True)
    if subscription.status is None:
        raise TaskRecordNotFound(f"no task with id {task_id} (its record expired while it was followed)")
    return subscription.status


def wait_for_result(tm: TaskManager, task_id: str, timeout: float | None = None) -> Any:
    """The result of ``task_id``, once it has ended.

    Raises:
      TaskFailed: (exit 1, one line) when it failed, was dead-lettered, cancelled or expired.
      click.ClickException: when ``timeout`` seconds pass first.
    """
    try:
        return tm.get_result(task_id, timeout=timeout)
    except TimeoutError:
        raise _timed_out(tm, task_id, timeout) from None


def _timed_out(tm: TaskManager, task_id: str, timeout: float | None) -> click.ClickException:
    status = tm.task_status(task_id)
    return click.ClickException(f"task {task_id} timed out after {timeout or 0:g} s (still {status.value})")
