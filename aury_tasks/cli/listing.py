"""``aum list``, ``aum stats``, ``aum queues``, ``aum cleanup``: the ledger as a whole."""

from __future__ import annotations

import dataclasses
import time

import click

from ..core.status import TaskStatus
from ..tasks.manager import TaskManager
from .context import echo_table
from .ledger import echo_fields, echo_json, pass_ledger, resolve_task_name, short_name
from .times import Duration, Moment, format_duration, format_moment

_STATUSES = [status.value for status in TaskStatus]
_WHEN = "a duration ago (30m, 24h, 7d) or a UTC date and time (2026-11-22T10:00)"


@click.command("list", short_help="List tasks, newest first, filtered and paged.")
@click.option("-s", "--status", type=click.Choice(_STATUSES, case_sensitive=False),
              help="Only tasks now in this status.")  # fmt: skip
@click.option("-q", "--queue", metavar="QUEUE", help="Only tasks sent to this queue.")
@click.option("-t", "--task", "task_name", metavar="NAME", help="Only tasks of this name (full or bare).")
@click.option("--since", type=Moment(), metavar="WHEN", help=f"Only tasks enqueued after WHEN: {_WHEN}.")
@click.option("--until", type=Moment(), metavar="WHEN", help="Only tasks enqueued before WHEN.")
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="Tasks per page.")  # fmt: skip
@click.option("-p", "--page", type=click.IntRange(1), default=1, show_default=True,
              help="Page to show; page 1 holds the newest tasks.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True,
              help="Print the page as JSON: items, total, page, page_size.")  # fmt: skip
@pass_ledger
def list_tasks(
    tm: TaskManager,
    status: str | None,
    queue: str | None,
    task_name: str | None,
    since: float | None,
    until: float | None,
    limit: int,
    page: int,
    as_json: bool,
) -> None:
    """List tasks, newest first: id, task, queue, status, when enqueued (UTC), how long it ran.

    Filters combine; each is one index read, so listing stays fast with millions of records.
    A line on standard error says how many tasks match and which page is shown.

    \b
    Examples:
      aum list                                 the 50 newest tasks
      aum list --status failure --since 24h    what failed today
      aum list -q emails -t send_welcome_email --limit 20 --page 2
      aum list --status dead --json | jq -r '.items[].id'
    """
    found = tm.list_tasks(
        status=status,
        queue=queue,
        task_name=resolve_task_name(tm, task_name),
        since=since,
        until=until,
        page=page,
        page_size=limit,
    )
    if as_json:
        echo_json({"items": [record.to_dict() for record in found.items], "total": found.total,
                   "page": found.page, "page_size": found.page_size})  # fmt: skip
        return
    if not found.items:
        if found.total:
            click.echo(f"page {page} is past the last page ({found.pages}) of {found.total} tasks", err=True)
        else:
            click.echo("no tasks match", err=True)
        return
    rows = [
        (
            record.id,
            short_name(record.task_name),
            record.queue_name,
            record.status.value,
            format_moment(record.enqueued_at),
            format_duration(record.duration),
        )
        for record in found.items
    ]
    echo_table(("ID", "TASK", "QUEUE", "STATUS", "ENQUEUED", "DURATION"), rows)
    more = f"; --page {page + 1} for more" if page < found.pages else ""
    click.echo(
        f"showing {len(found.items)} of {found.total} tasks (page {page} of {found.pages}){more}", err=True
    )


@click.command()
@click.option("--since", type=Moment(), default="24h", show_default=True, metavar="WHEN",
              help=f"Start of the window: {_WHEN}.")  # fmt: skip
@click.option("--until", type=Moment(), metavar="WHEN", help="End of the window.  [default: now]")
@click.option("-q", "--queue", metavar="QUEUE", help="Only tasks of this queue.")
@click.option("-t", "--task", "task_name", metavar="NAME", help="Only tasks of this name (full or bare).")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@pass_ledger
def stats(
    tm: TaskManager,
    since: float,
    until: float | None,
    queue: str | None,
    task_name: str | None,
    as_json: bool,
) -> None:
    """Show how the tasks that ended in a time window went.

    Counts by outcome (succeeded, failed, cancelled, expired, dead), the success rate, and the
    average, median (p50) and p95 run time. Read from per-minute and per-hour counters, so a
    week costs as little as an hour; p50 and p95 are within about 12 %.

    \b
    Examples:
      aum stats                           the last 24 hours
      aum stats --since 7d -q emails
      aum stats --since 2026-11-22 --until 2026-11-23 -t build_report --json
    """
    if queue is not None and task_name is not None:
        raise click.UsageError("give --queue or --task, not both (a task's counters span its queues)")
    found = tm.statistics(since, until, queue=queue, task_name=resolve_task_name(tm, task_name))
    if as_json:
        echo_json(dataclasses.asdict(found))
        return
    echo_fields(
        [
            ("window", f"{format_moment(found.start)} to {format_moment(found.end)} UTC"),
            ("total", found.total),
            ("succeeded", found.succeeded),
            ("failed", found.failed),
            ("cancelled", found.cancelled),
            ("expired", found.expired),
            ("dead", found.dead),
            ("success rate", f"{found.success_rate:.1%}" if found.total else "-"),
            ("avg duration", format_duration(found.average_duration)),
            ("p50 duration", format_duration(found.p50_duration)),
            ("p95 duration", format_duration(found.p95_duration)),
        ]
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the queues as JSON.")
@pass_ledger
def queues(tm: TaskManager, as_json: bool) -> None:
    """Show every queue as it stands now.

    PENDING waits for a worker, SCHEDULED waits for its time (a delay, or a retry's backoff),
    RUNNING is being run, DEAD is in the dead-letter queue (see aum dlq), SUCCEEDED and FAILED
    count the records still kept, WORKERS the workers that served the queue in the last 30 s.

    \b
    Examples:
      aum queues
      aum queues --json | jq '.[] | select(.pending > 100)'
    """
    found = tm.queues()
    if as_json:
        echo_json([dataclasses.asdict(queue) for queue in found])
        return
    if not found:
        click.echo("no queues yet: nothing was sent and no worker is running", err=True)
        return
    rows = [
        (q.queue_name, q.pending, q.scheduled, q.running, q.dead, q.succeeded, q.failed, q.workers)
        for q in found
    ]
    echo_table(("QUEUE", "PENDING", "SCHEDULED", "RUNNING", "DEAD", "SUCCEEDED", "FAILED", "WORKERS"), rows)


@click.command(short_help="Delete the records of tasks that ended long ago.")
@click.option("--older-than", type=Duration(), required=True, metavar="DURATION",
              help="Delete records of tasks that ended over DURATION ago (90s, 30m, 7d).")  # fmt: skip
@pass_ledger
def cleanup(tm: TaskManager, older_than: float) -> None:
    """Delete the records (and results) of tasks that ended more than a given time ago.

    Tasks that have not ended are never deleted; records expire on their own after
    TASK_RESULT_TTL (7 days), so this is for freeing memory sooner. Dead letters stay (see
    aum dlq purge). Prints how many records were deleted.

    \b
    Examples:
      aum cleanup --older-than 30d
      aum cleanup --older-than 12h
    """
    cutoff = time.time() - older_than
    deleted = tm.cleanup(older_than)
    click.echo(f"deleted {deleted} record(s) of tasks that ended before {format_moment(cutoff)} UTC")
