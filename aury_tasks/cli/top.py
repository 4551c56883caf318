"""``aum top``: a live view of the queues, their rates and the running tasks, redrawn in place.

One frame is rendered from a :class:`Snapshot` by a pure function (:func:`render_frame`), so what
is shown can be tested without a terminal; the loop around it only samples, sleeps and draws.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import click

from ..core.status import TaskStatus
from ..ledger.records import QueueStats, Statistics, TaskRecord
from ..tasks.manager import TaskManager
from .ledger import pass_ledger, short_name
from .times import Duration, format_duration, format_moment

#: The window of the DONE/1M and FAILED/1M columns, in seconds.
_MINUTE = 60.0
#: Shortest refresh interval accepted (each frame costs a few Redis round trips per queue).
_MIN_INTERVAL = 0.1
#: Switch to the terminal's alternate screen and hide the cursor; and back.
_ENTER_SCREEN, _LEAVE_SCREEN = "\x1b[?1049h\x1b[?25l", "\x1b[?25h\x1b[?1049l"
#: Cursor home; clear to the end of a line; clear to the end of the screen (no flicker between frames).
_HOME, _CLEAR_LINE, _CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"
_QUEUE_HEADERS = ("QUEUE", "PENDING", "DELAYED", "RUNNING", "DEAD", "DONE/1M", "FAILED/1M", "RATE/S",
                  "WORKERS")  # fmt: skip
_TASK_HEADERS = ("ID", "TASK", "QUEUE", "WORKER", "RUNNING FOR", "PROGRESS")


@dataclass(frozen=True)
class Snapshot:
    """What one frame shows, read from the ledger at ``taken_at`` (UNIX seconds)."""

    taken_at: float
    #: The broker as :meth:`BrokerInfo.describe` tells it (password masked).
    broker: str
    workers: int
    queues: list[QueueStats]
    #: Tasks that ended in the last minute, by queue name.
    last_minute: dict[str, Statistics]
    #: The running tasks shown (at most ``--limit``), and how many are running in all.
    running: list[TaskRecord]
    running_total: int


def take_snapshot(tm: TaskManager, limit: int) -> Snapshot:
    """Read one :class:`Snapshot` from the ledger (a few round trips per queue)."""
    now = time.time()
    found = tm.queues()
    running = tm.list_tasks(status=TaskStatus.STARTED, page_size=limit)
    return Snapshot(
        taken_at=now,
        broker=tm.broker_info.describe(),
        workers=len(tm.workers()),
        queues=found,
        last_minute={q.queue_name: tm.statistics(now - _MINUTE, now, queue=q.queue_name) for q in found},
        running=running.items,
        running_total=running.total,
    )


def ended_rates(previous: Snapshot | None, current: Snapshot) -> dict[str, float]:
    """Tasks ended (succeeded or failed) per second in each queue between two snapshots.

    A queue missing from ``previous`` (or no ``previous`` at all) has no rate; a count that fell
    (records cleaned up or expired meanwhile) counts as no task ended.
    """
    if previous is None or current.taken_at <= previous.taken_at:
        return {}
    before = {q.queue_name: q.succeeded + q.failed for q in previous.queues}
    elapsed = current.taken_at - previous.taken_at
    return {
        q.queue_name: max(0, q.succeeded + q.failed - before[q.queue_name]) / elapsed
        for q in current.queues
        if q.queue_name in before
    }


def render_frame(snapshot: Snapshot, rates: dict[str, float]) -> str:
    """One frame as text: a header line, the queues table, the running tasks table.

    Pure: the same snapshot and rates always give the same text (no escape codes).
    """
    moment = format_moment(snapshot.taken_at)
    lines = [f"aum top - {snapshot.broker} - {moment} UTC - workers alive: {snapshot.workers}", ""]
    if snapshot.queues:
        lines += table_lines(_QUEUE_HEADERS, [_queue_row(q, snapshot, rates) for q in snapshot.queues],
                             align="lrrrrrrrr")  # fmt: skip
    else:
        lines.append("no queues yet: nothing was sent and no worker is running")
    lines.append("")
    if snapshot.running:
        rows = [_task_row(record, snapshot.taken_at) for record in snapshot.running]
        lines += table_lines(_TASK_HEADERS, rows, align="llllrr")
        hidden = snapshot.running_total - len(snapshot.running)
        if hidden > 0:
            lines.append(f"… and {hidden} more running (--limit to show more)")
    else:
        lines.append("no task is running")
    return "\n".join(lines)


def _queue_row(queue: QueueStats, snapshot: Snapshot, rates: dict[str, float]) -> list[str]:
    minute = snapshot.last_minute.get(queue.queue_name)
    rate = rates.get(queue.queue_name)
    return [
        queue.queue_name,
        *(str(n) for n in (queue.pending, queue.scheduled, queue.running, queue.dead)),
        str(minute.succeeded) if minute else "-",
        str(minute.failed + minute.dead) if minute else "-",
        "-" if rate is None else f"{rate:.1f}",
        str(queue.workers),
    ]


def _task_row(record: TaskRecord, now: float) -> list[str]:
    running_for = now - record.started_at if record.started_at else None
    progress = f"{record.progress.percent:.0f}%" if record.progress else "-"
    return [record.id, short_name(record.task_name), record.queue_name, record.worker or "-",
            format_duration(None if running_for is None else max(0.0, running_for)), progress]  # fmt: skip


def table_lines(headers: Sequence[str], rows: Sequence[Sequence[str]], *, align: str) -> list[str]:
    """An aligned table as lines; ``align`` has one letter a column, ``l`` (left) or ``r`` (right)."""
    cells = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(cell.rjust(w) if side == "r" else cell.ljust(w)
                  for cell, w, side in zip(row, widths, align, strict=True)).rstrip()
        for row in cells
    ]  # fmt: skip


@contextmanager
def screen(redraw: bool) -> Iterator[None]:
    """On a terminal (``redraw``), draw on the alternate screen and give the normal one back after."""
    if not redraw:
        yield
        return
    click.echo(_ENTER_SCREEN, nl=False)
    try:
        yield
    finally:
        click.echo(_LEAVE_SCREEN, nl=False)


def draw(frame: str, *, redraw: bool, first: bool) -> None:
    """Show one frame: over the last on a terminal, after it (a blank line between) otherwise."""
    if redraw:
        lines = (line + _CLEAR_LINE for line in frame.splitlines())
        click.echo(_HOME + "\n".join(lines) + _CLEAR_BELOW, nl=False)
    else:
        click.echo(frame if first else "\n" + frame)


def watch(tm: TaskManager, interval: float, limit: int, *, redraw: bool) -> None:
    """Draw a frame every ``interval`` seconds until interrupted (Ctrl-C)."""
    previous: Snapshot | None = None
    next_at = time.monotonic()
    with screen(redraw):
        while True:
            current = take_snapshot(tm, limit)
            draw(render_frame(current, ended_rates(previous, current)), redraw=redraw, first=previous is None)
            previous = current
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))


@click.command(short_help="A live view of queues, rates and running tasks.")
@click.option("-i", "--interval", type=Duration(bare_seconds=True), default="2", show_default=True,
              metavar="SECONDS", help="Seconds between two frames (also a duration: 5s, 1m).")  # fmt: skip
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Running tasks shown at most.")  # fmt: skip
@click.option("--once", is_flag=True,
              help="Print one frame and exit (its rates from two samples INTERVAL apart).")  # fmt: skip
@pass_ledger
def top(tm: TaskManager, interval: float, limit: int, once: bool) -> None:
    """Show the queues and the running tasks, refreshed every INTERVAL seconds, until Ctrl-C.

    The header names the broker (password masked), the time (UTC) and how many workers were
    seen in the last 30 s. Then one row a queue: PENDING waits for a worker, DELAYED waits for
    its time (a delay, a retry's backoff), RUNNING is being run, DEAD is in the dead-letter
    queue, DONE/1M and FAILED/1M ended with success or failure (or dead) in the last minute
    (counted by whole minutes: up to two), RATE/S is the tasks that ended per second since the
    frame before. Then the running tasks, newest first: id, task, queue, worker,
    how long it has run, and its last progress report.

    On a terminal each frame is drawn over the last, on the alternate screen, and the screen
    is given back on exit. Otherwise (a pipe, a file) frames follow one another, a blank line
    between, without escape codes. Reads the ledger only: no task modules are imported.

    \b
    Examples:
      aum top                        refresh every 2 s until Ctrl-C
      aum top -i 10 -n 50            every 10 s, up to 50 running tasks
      aum top --once                 one frame, for a script or a log
      aum top --once -i 0.5 | grep emails

    \b
    Exit codes:
      0 Ctrl-C, or --once done   2 bad option   4 broker unreachable
    """
    if interval < _MIN_INTERVAL:
        raise click.BadParameter(f"must be at least {_MIN_INTERVAL} s", param_hint="'--interval'")
    if once:
        first = take_snapshot(tm, limit)
        time.sleep(interval)
        current = take_snapshot(tm, limit)
        click.echo(render_frame(current, ended_rates(first, current)))
        return
    try:
        watch(tm, interval, limit, redraw=sys.stdout.isatty())
    except KeyboardInterrupt:
        return
