"""``aum schedule``: list, add, change, pause, resume, run and remove scheduled jobs; check a cron.

Every command but ``add`` works on the job definitions in Redis alone (no task modules imported);
a running scheduler applies a change at once.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import click

from ..core.errors import SchedulerError
from ..scheduler.dst import dst_warnings
from ..scheduler.jobs import JobDefinition
from ..scheduler.manager import JobInfo, SchedulerManager
from ..scheduler.triggers import next_fire_times
from ..tasks.manager import TaskManager
from .context import AumContext, echo_table, modules_option, pass_context
from .ledger import echo_fields, echo_json, pass_ledger, short_name
from .send import parse_json
from .times import Duration, format_duration, format_moment


@click.group()
def schedule() -> None:
    """List and manage scheduled jobs (kept in Redis; the running scheduler applies changes at once).

    \b
    Examples:
      aum schedule list
      aum schedule add build_report --cron "0 6 * * 1-5" --kwargs '{"kind": "daily"}'
      aum schedule add sync_prices --every 5m --id prices
      aum schedule pause prices; aum schedule run prices
      aum schedule validate "*/15 9-17 * * 1-5" --timezone Europe/Paris
    """


def trigger_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--cron``, ``--every``, ``--at``, ``--timezone``: a trigger on the command line."""
    options = [
        click.option("--cron", metavar="EXPR",
                     help='A five-field crontab, e.g. "0 2 * * *" (day of week 0 = Sunday).'),
        click.option("--every", type=Duration(bare_seconds=True), metavar="DURATION",
                     help="An interval: seconds or a duration (90s, 5m, 1h30m)."),
        click.option("--at", "run_at", metavar="DATETIME",
                     help="Once, at this ISO 8601 date and time (in --timezone unless it has an offset)."),
        click.option("--timezone", metavar="ZONE",
                     help="IANA timezone of --cron and --at.  [default: TASK_SCHEDULER_TIMEZONE]"),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def job_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--args``, ``--kwargs`` and APScheduler's job options."""
    options = [
        click.option("--args", "args_json", metavar="JSON", help="Positional arguments as a JSON array."),
        click.option("--kwargs", "kwargs_json", metavar="JSON", help="Keyword arguments as a JSON object."),
        click.option("--misfire-grace-time", type=Duration(bare_seconds=True), metavar="DURATION",
                     help="How late a fire may still happen.  [default: TASK_SCHEDULER_MISFIRE_GRACE_TIME]"),
        click.option("--coalesce/--no-coalesce", default=None,
                     help="Send missed fires once, or once each.  [default: TASK_SCHEDULER_COALESCE]"),
        click.option("--jitter", type=Duration(bare_seconds=True), metavar="DURATION",
                     help="A random delay up to DURATION added to each fire."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


@schedule.command("list", short_help="List the jobs: trigger, next run, last run.")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@pass_ledger
def list_jobs(tm: TaskManager, as_json: bool) -> None:
    """List the scheduled jobs: trigger, next run, last run and how its task ended (times in UTC)."""
    infos = sorted(SchedulerManager.get_instance(tm.name).list_jobs(), key=lambda info: info.job.id)
    if as_json:
        echo_json([_info_dict(info) for info in infos])
        return
    if not infos:
        click.echo("no scheduled jobs (add one: aum schedule add TASK --cron EXPR)", err=True)
        return
    rows = [
        [
            info.job.id,
            short_name(info.job.task_name),
            info.trigger_text,
            "paused" if info.job.paused else format_moment(_seconds(info.next_run)),
            format_moment(info.last_run.planned_at if info.last_run else None),
            info.last_status.value if info.last_status else "-",
        ]
        for info in infos
    ]
    echo_table(["ID", "TASK", "TRIGGER", "NEXT RUN", "LAST RUN", "LAST STATUS"], rows)


@schedule.command(short_help="Show one job, its next fire times and last run.")
@click.argument("job_id", metavar="JOB")
@click.option("-n", "--count", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Upcoming fire times to show.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@pass_ledger
def show(tm: TaskManager, job_id: str, count: int, as_json: bool) -> None:
    """Show one job: its task, trigger, arguments, options, next fire times and last run."""
    manager = SchedulerManager.get_instance(tm.name)
    job = manager.get_job(job_id)
    [info] = [info for info in manager.list_jobs() if info.job.id == job.id] or [
        JobInfo(job, None, None, None)
    ]
    upcoming = [] if job.paused else next_fire_times(job.trigger, count)
    if as_json:
        echo_json({**_info_dict(info), "next_runs": [moment.isoformat() for moment in upcoming]})
        return
    options = job.options
    last = info.last_run
    echo_fields([
        ("id", job.id),
        ("task", job.task_name),
        ("queue", job.queue_name),
        ("trigger", info.trigger_text),
        ("state", "paused" if job.paused else "active"),
        ("args", json.dumps(job.args)),
        ("kwargs", json.dumps(job.kwargs)),
        ("options", f"coalesce={options.coalesce} max_instances={options.max_instances} "
                    f"misfire_grace_time={format_duration(options.misfire_grace_time)} "
                    f"jitter={format_duration(options.jitter)}"),
        ("origin", "declared in code" if job.origin == "code" else "added at run time"),
        ("updated", format_moment(job.updated_at, ago=True)),
        ("next runs", "\n".join(f"{moment:%Y-%m-%d %H:%M:%S %Z}" for moment in upcoming) or "-"),
        ("last run", format_moment(last.planned_at, ago=True) if last else "-"),
        ("last task", f"{last.task_id} ({info.last_status.value if info.last_status else 'unknown'})"
                      if last else "-"),
    ])  # fmt: skip
    for warning in dst_warnings(job.trigger):
        click.echo(f"warning: {warning}", err=True)


@schedule.command(short_help="Schedule a task: --cron, --every or --at.")
@click.argument("task_name", metavar="TASK")
@trigger_options
@job_options
@click.option("--id", "job_id", metavar="ID", help="The job's id.  [default: the task's name]")
@click.option("--paused", is_flag=True, help="Add it paused (it fires after aum schedule resume).")
@click.option("--replace", is_flag=True, help="Replace a job of the same id instead of failing.")
@modules_option
@pass_context
def add(aum: AumContext, task_name: str, modules_dir: str | None, job_id: str | None, paused: bool,
        replace: bool, **given: Any) -> None:  # fmt: skip
    """Schedule TASK (a registered name, or the bare function name) with one trigger.

    Give exactly one of --cron, --every and --at. The task modules are imported to check the
    name and find the task's queue. Prints the job and its next fire time.

    \b
    Examples:
      aum schedule add daily_cleanup --cron "0 2 * * *"
      aum schedule add build_report --cron "0 6 * * 1-5" --timezone Europe/Paris --kwargs '{"kind": "daily"}'
      aum schedule add sync_prices --every 5m --id prices --no-coalesce
      aum schedule add send_reminder --at 2026-12-24T18:00 --args '["42"]'
    """
    tm = aum.with_task_modules(modules_dir)
    task = tm.get_task(task_name)
    trigger, arguments = _split_given(given, require_trigger=True)
    manager = SchedulerManager.get_instance(tm.name)
    job = manager.add_job(task, id=job_id, paused=paused, replace_existing=replace, **trigger, **arguments)
    _echo_saved("added", job)


@schedule.command(short_help="Change a job's trigger, arguments or options.")
@click.argument("job_id", metavar="JOB")
@trigger_options
@job_options
@pass_ledger
def update(tm: TaskManager, job_id: str, **given: Any) -> None:
    """Change a job's trigger, arguments or options; what is not given stays as it is.

    \b
    Examples:
      aum schedule update daily_cleanup --cron "30 3 * * *"
      aum schedule update prices --every 10m --kwargs '{"full": true}'
    """
    trigger, arguments = _split_given(given, require_trigger=False)
    if not trigger and not arguments:
        raise click.UsageError(
            "nothing to change: give a trigger (--cron, --every, --at), --args, --kwargs or an option"
        )
    manager = SchedulerManager.get_instance(tm.name)
    _echo_saved("updated", manager.update_job(job_id, **trigger, **arguments))


def _each_job_command(short_help: str) -> Callable[[Callable[[SchedulerManager, str], None]], click.Command]:
    """A command ``aum schedule NAME JOB...`` that runs the function on each job, in order, once
    every one is known to exist (so that none is changed if one is not)."""

    def make(act: Callable[[SchedulerManager, str], None]) -> click.Command:
        @functools.wraps(act)
        def on_each(tm: TaskManager, job_ids: tuple[str, ...]) -> None:
            manager = SchedulerManager.get_instance(tm.name)
            for job_id in job_ids:
                manager.get_job(job_id)
            for job_id in job_ids:
                act(manager, job_id)

        jobs = click.argument("job_ids", metavar="JOB...", nargs=-1, required=True)
        return schedule.command(short_help=short_help)(jobs(pass_ledger(on_each)))

    return make


@_each_job_command("Stop firing jobs until resumed.")
def pause(manager: SchedulerManager, job_id: str) -> None:
    """Stop firing jobs until they are resumed."""
    click.echo(f"paused {manager.pause_job(job_id).id}")


@_each_job_command("Fire paused jobs again.")
def resume(manager: SchedulerManager, job_id: str) -> None:
    """Fire paused jobs again, from their next planned time (missed fires are not sent)."""
    job = manager.resume_job(job_id)
    upcoming = next_fire_times(job.trigger, 1)
    click.echo(f"resumed {job.id}; next run {format_moment(_seconds(upcoming[0]) if upcoming else None)} UTC")


@schedule.command("run", short_help="Send a job's task now, once.")
@click.argument("job_id", metavar="JOB")
@pass_ledger
def run_now(tm: TaskManager, job_id: str) -> None:
    """Send a job's task now, once, outside its schedule; print the task id.

    Follow it with aum status ID --follow. The planned fires are unchanged.
    """
    handle = SchedulerManager.get_instance(tm.name).run_job_now(job_id)
    click.echo(f"sent {handle.task_name} to queue {handle.queue_name}", err=True)
    click.echo(handle.id)


@_each_job_command("Delete jobs.")
def remove(manager: SchedulerManager, job_id: str) -> None:
    """Delete jobs. A job declared in code comes back when a scheduler starts (delete it in code)."""
    origin = manager.get_job(job_id).origin
    manager.remove_job(job_id)
    note = " (declared in code: it comes back when a scheduler starts)" if origin == "code" else ""
    click.echo(f"removed {job_id}{note}")


@schedule.command(short_help="Check a crontab; show its next fire times.")
@click.argument("expression", metavar="EXPR")
@click.option("-n", "--count", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Upcoming fire times to show.")  # fmt: skip
@click.option("--timezone", metavar="ZONE", help="IANA timezone.  [default: TASK_SCHEDULER_TIMEZONE]")
@click.option(
    "--json", "as_json", is_flag=True, help="Print valid, reason, next fire times and warnings as JSON."
)
@pass_context
def validate(aum: AumContext, expression: str, count: int, timezone: str | None, as_json: bool) -> None:
    """Check a five-field crontab: print its next fire times, or why it is wrong (exit 2).

    Needs no Redis. Day of week 0 and 7 are Sunday; when both day of month and day of week
    are given, either matching fires (as in cron).

    \b
    Examples:
      aum schedule validate "*/15 9-17 * * 1-5"
      aum schedule validate "30 2 * * *" --timezone Europe/Berlin     warns about the clock changes
    """
    manager = SchedulerManager.get_instance()
    zone = timezone or aum.settings.scheduler_timezone
    check = manager.validate_cron(expression, count=count, timezone=zone)
    if as_json:
        echo_json({"valid": check.valid, "reason": check.reason, "timezone": zone, "warnings": check.warnings,
                   "next_fire_times": [moment.isoformat() for moment in check.next_fire_times]})  # fmt: skip
    if not check.valid:
        raise SchedulerError(check.reason)
    if as_json:
        return
    click.echo(f"valid: next {len(check.next_fire_times)} fire time(s) in {zone}")
    for moment in check.next_fire_times:
        click.echo(f"  {moment:%Y-%m-%d %H:%M:%S %Z}  ({moment:%a})")
    for warning in check.warnings:
        click.echo(f"warning: {warning}", err=True)


def _split_given(given: dict[str, Any], *, require_trigger: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trigger and the other ``add_job`` arguments from the command line's options."""
    forms = {"cron": given.pop("cron"), "interval": given.pop("every"), "run_at": given.pop("run_at")}
    chosen = {name: value for name, value in forms.items() if value is not None}
    if len(chosen) > 1 or (require_trigger and not chosen):
        raise click.UsageError("give exactly one trigger: --cron EXPR, --every DURATION or --at DATETIME")
    trigger = dict(chosen)
    zone = given.pop("timezone")
    if zone is not None:
        if not chosen:
            raise click.UsageError("--timezone goes with a trigger (--cron or --at)")
        trigger["timezone"] = zone
    arguments: dict[str, Any] = {}
    args_json, kwargs_json = given.pop("args_json"), given.pop("kwargs_json")
    if args_json is not None:
        arguments["args"] = parse_json(args_json, "--args", "array", list, "'[\"42\", 3]'")
    if kwargs_json is not None:
        arguments["kwargs"] = parse_json(kwargs_json, "--kwargs", "object", dict, '\'{"user_id": "42"}\'')
    arguments.update({name: value for name, value in given.items() if value is not None})
    return trigger, arguments


def _echo_saved(verb: str, job: JobDefinition) -> None:
    """One line: what was saved, and when it fires next (a daylight saving warning was logged)."""
    upcoming = [] if job.paused else next_fire_times(job.trigger, 1)
    state = (
        "paused"
        if job.paused
        else f"next run {format_moment(_seconds(upcoming[0]) if upcoming else None)} UTC"
    )
    click.echo(f"{verb} {job.id}: {short_name(job.task_name)} {job.trigger.describe()}; {state}")


def _info_dict(info: JobInfo) -> dict[str, Any]:
    last = info.last_run
    return {
        **json.loads(info.job.to_json()),
        "trigger_text": info.trigger_text,
        "next_run": info.next_run.isoformat() if info.next_run else None,
        "last_run": None if last is None else {
            "planned_at": _iso(last.planned_at), "fired_at": _iso(last.fired_at), "task_id": last.task_id,
            "status": info.last_status.value if info.last_status else None,
        },
    }  # fmt: skip


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat()
