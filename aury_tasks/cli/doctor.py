"""``aum doctor``: check a deployment, one aligned line per check, and exit non-zero on a problem.

Every check reuses what the other commands run: the settings of :class:`AumContext`, the broker
check of ``aum worker`` (:func:`reach_broker`), the Redis checks of :mod:`aury_tasks.broker.redis.checks`,
the ledger, task discovery and the scheduled jobs. A problem that leaves nothing to check after it
(bad settings, a Redis that does not answer, a module that fails to import) stops the run with its
exit code; the others are reported and the run goes on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import click
import redis
from dramatiq.brokers.redis import RedisBroker
from loguru import logger

from ..broker.redis.checks import (
    MIN_REDIS_VERSION,
    REQUIRED_COMMAND_NAMES,
    acl_check,
    redis_warnings,
    too_old,
)
from ..config.settings import TaskSettings
from ..core.errors import AuryTasksError, BrokerUnavailable, ConfigError, LedgerUnavailable, SchedulerError
from ..core.keys import KeySpace
from ..core.redaction import redact_text
from ..core.sentinel_url import is_sentinel_url
from ..redis.sentinel_view import view_sentinels
from ..scheduler.jobs import JobDefinition
from ..scheduler.manager import SchedulerManager
from ..tasks.manager import TaskManager
from ..worker.discovery import import_task_modules
from .context import AumContext, modules_option, pass_context
from .ledger import reaching_ledger
from .server_checks import reach_broker
from .times import format_moment

#: The words of the status column.
OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Finding:
    """One line of the report: a status, what was checked, what was found."""

    status: str
    check: str
    detail: str


class Stop(Exception):
    """A check failed in a way that leaves nothing to check after it."""


@dataclass
class Report:
    """The findings so far and the exit code they make."""

    findings: list[Finding] = field(default_factory=list)
    #: The exit code of the first failure (``0``: none so far).
    exit_code: int = 0

    def ok(self, check: str, detail: str) -> None:
        """Record a check that passed."""
        self.findings.append(Finding(OK, check, detail))

    def warn(self, check: str, detail: str) -> None:
        """Record a risk that does not stop anything."""
        self.findings.append(Finding(WARN, check, detail))

    def fail(self, check: str, detail: str, exit_code: int = 1, *, stop: bool = False) -> None:
        """Record a problem; ``stop``: nothing after it can be checked (raises :class:`Stop`)."""
        self.findings.append(Finding(FAIL, check, detail))
        self.exit_code = self.exit_code or exit_code
        if stop:
            raise Stop

    def count(self, status: str) -> int:
        """How many findings have ``status``."""
        return sum(1 for finding in self.findings if finding.status == status)

    def echo(self, *, stopped: bool) -> None:
        """Print the findings aligned (passwords masked), then the summary line."""
        width = max((len(finding.check) for finding in self.findings), default=0)
        for finding in self.findings:
            detail = redact_text(finding.detail)
            click.echo(f"{finding.status:<4}  {finding.check:<{width}}  {detail}".rstrip())
        summary = f"{self.count(OK)} ok, {self.count(WARN)} warn, {self.count(FAIL)} FAIL"
        if stopped:
            summary += f"; stopped at {self.findings[-1].check}"
        click.echo(f"{summary} (exit {self.exit_code})" if self.exit_code else summary)


@click.command(short_help="Check the settings, Redis, task modules and schedules.")
@modules_option
@click.option(
    "--acl-user",
    metavar="USER",
    default=None,
    help="Check this ACL user's commands rather than the connected one's (ACL DRYRUN needs an admin "
    "user in the URL).",
)
@pass_context
def doctor(aum: AumContext, modules_dir: str | None, acl_user: str | None) -> None:
    """Check a deployment: one line per check, ok, warn or FAIL, then a summary.

    Checks, in order: the settings; the broker's Redis (it answers, takes the credentials, is
    Redis 6.2 or later); its persistence (appendonly yes), eviction (maxmemory-policy noeviction),
    TLS and password; whether its ACL user may run every command aury-tasks needs (Redis 7+ or
    Valkey, with ACL DRYRUN); the ledger (and its own Redis, if TASK_RESULT_BACKEND_URL names
    one); the task modules and their tasks; the scheduled jobs, in code and in Redis; the workers
    seen in the last 30 seconds. Warnings are risks, not errors: they leave the exit code at 0.
    Passwords are masked.

    \b
    Examples:
      aum doctor                          after a deploy or an upgrade
      aum doctor --modules src/modules
      TASK_BROKER_URL=rediss://admin:…@redis:6380/0 aum doctor --acl-user aury
      aum --env-file /srv/app/.env doctor

    \b
    Exit codes:
      0 no FAIL (warnings allowed)   1 a check failed (an ACL refusal, an unreadable job)
      2 bad setting (also refused credentials, too old a Redis)   3 a task module failed to import
      4 the broker or the ledger unreachable
    """
    report = Report()
    stopped = False
    try:
        run_checks(report, aum, modules_dir, acl_user=acl_user)
    except Stop:
        stopped = True
    report.echo(stopped=stopped)
    click.get_current_context().exit(report.exit_code)


def run_checks(
    report: Report, aum: AumContext, modules_dir: str | None, *, acl_user: str | None = None
) -> None:
    """Run every check in order, into ``report`` (``acl_user``: whose commands to check).

    Raises:
      Stop: at a failure that leaves nothing to check after it.
    """
    settings = _check_settings(report, aum, modules_dir)
    tm = aum.task_manager()
    _check_broker(report, tm, acl_user)
    ledger = _check_ledger(report, tm, acl_user)
    _check_tasks(report, tm, settings)
    if ledger:
        with _stopping_on_connection_errors(report, tm):
            _check_schedules(report, tm)
            _check_workers(report, tm)


def _check_settings(report: Report, aum: AumContext, modules_dir: str | None) -> TaskSettings:
    if modules_dir is not None:
        aum.overrides["modules_dir"] = modules_dir
    try:
        settings = aum.settings
    except ConfigError as error:
        report.fail("settings", error.message, error.exit_code, stop=True)
    where = aum.env_file or "./.env"
    report.ok(
        "settings",
        f"valid (environment and {where}); modules {settings.modules_dir}/, "
        f"default queue {settings.queue_name}, keys under {settings.key_prefix}:",
    )
    return settings


def _check_broker(report: Report, tm: TaskManager, acl_user: str | None) -> None:
    try:
        reach_broker(tm)  # refused credentials or too old: ConfigError; no answer: BrokerUnavailable
    except AuryTasksError as error:
        report.fail("broker", error.message, error.exit_code, stop=True)
    if not isinstance(tm.broker, RedisBroker):
        report.ok("broker", f"{tm.broker_info.describe()} (not Redis: its server is not checked)")
        return
    _check_redis(report, "broker", tm.broker.client, tm.broker_info.describe(), acl_user, tm.keys)
    url = tm.settings.broker_url_value
    if url and is_sentinel_url(url):
        _check_sentinels(report, url)


def _check_sentinels(report: Report, url: str) -> None:
    """Where the sentinels say the master is, its replicas, and how many sentinels agree."""
    view = view_sentinels(url)
    if view.master is None:
        report.fail("broker sentinels", f"none of the {view.listed} sentinels knows {view.master_name}")
        return
    replicas = ", ".join(view.replicas) or "none"
    quorum = f", quorum {view.quorum}" if view.quorum is not None else ""
    detail = (
        f"master {view.master} ({view.master_name}), replicas {replicas}; "
        f"{view.agreeing} of {view.listed} sentinels agree ({view.known} known{quorum})"
    )
    if view.agreeing < view.listed or not view.replicas:
        report.warn("broker sentinels", detail)
    else:
        report.ok("broker sentinels", detail)


def _check_ledger(report: Report, tm: TaskManager, acl_user: str | None) -> bool:
    """The ledger's check; ``False`` when task state is not kept (nothing of it to read)."""
    try:
        client = tm.store.client
    except LedgerUnavailable as error:
        report.warn("ledger", error.message)
        return False
    info = tm.broker_info
    with _stopping_on_connection_errors(report, tm):
        client.ping()
    if not tm.settings.result_backend_url_value:
        report.ok("ledger", f"on the broker's Redis, {info.display_url}")
        return True
    version = too_old(client)
    if version is not None:
        wanted = ".".join(map(str, MIN_REDIS_VERSION))
        needs = f"aury-tasks needs Redis {wanted} or later (or Valkey)"
        report.fail("ledger", f"{info.ledger_display_url} is Redis {version}; {needs}", 2, stop=True)
    _check_redis(report, "ledger", client, f"redis at {info.ledger_display_url}", acl_user, tm.keys)
    return True


def _check_redis(
    report: Report, role: str, client: redis.Redis, where: str, acl_user: str | None, keys: KeySpace
) -> None:
    """The version, the risks and the ACL (on the keys under ``keys``' prefix) of one Redis that answers."""
    server: dict[str, Any] = client.info("server")
    name = str(server.get("server_name") or "redis")
    version = server.get("valkey_version") if name == "valkey" else server.get("redis_version")
    report.ok(role, f"{where}: {name} {version} answers")
    try:
        warnings = redis_warnings(client, role=role)
    except redis.RedisError as exc:
        warnings = [f"the {role} Redis's settings could not be read ({exc})"]
    for warning in warnings:
        report.warn(f"{role} redis", warning)
    if not warnings:
        report.ok(f"{role} redis", "appendonly yes, maxmemory-policy noeviction")
    acl = acl_check(client, keys, acl_user)
    check = f"{role} acl"
    if acl.skipped:
        report.warn(check, f"commands not checked: {acl.skipped}")
        return
    if acl.refused:
        report.fail(
            check,
            f"user {acl.user} may not run {', '.join(acl.refused)}: "
            f"{next(iter(acl.refused.values()))}; grant them on ~{keys.pattern()} (docs/deploy.md)",
        )
    else:
        count = len(REQUIRED_COMMAND_NAMES)
        report.ok(check, f"user {acl.user} may run the {count} commands aury-tasks needs on {keys.pattern()}")
    if acl.refused_optional:
        report.warn(check, f"user {acl.user} may not run {', '.join(acl.refused_optional)} (optional)")


def _check_tasks(report: Report, tm: TaskManager, settings: TaskSettings) -> None:
    try:
        modules = import_task_modules(settings.modules_dir)
    except AuryTasksError as error:  # a module that fails to import: 3; no such directory: 2
        report.fail("modules", error.message, error.exit_code, stop=True)
    tasks = sorted(tm.tasks.values(), key=lambda t: (t.queue_name, t.name))
    if not tasks:
        report.warn(
            "tasks",
            f"no tasks found under {settings.modules_dir}/ (looked for <name>/tasks/ or <name>/tasks.py)",
        )
        return
    queues = sorted({task.queue_name for task in tasks})
    report.ok(
        "tasks",
        f"{len(tasks)} task(s) from {len(modules)} module(s) "
        f"({', '.join(m.name for m in modules)}) on queue(s) {', '.join(queues)}",
    )
    width = max(len(task.name) for task in tasks)
    for task in tasks:
        report.ok(
            "task",
            f"{task.name:<{width}}  queue {task.queue_name}, {task.max_retries} retries, "
            f"timeout {task.timeout:g}s",
        )


def _check_schedules(report: Report, tm: TaskManager) -> None:
    scheduler = SchedulerManager.get_instance(tm.name)
    unreadable = {}
    for raw_id, text in scheduler.store.client.hgetall(scheduler.store.keys.scheduler_jobs()).items():
        try:
            JobDefinition.from_json(text)
        except (SchedulerError, ValueError) as exc:
            unreadable[raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)] = str(exc)
    with _loguru_disabled("aury_tasks.scheduler"):  # the unreadable ones are said below
        infos = sorted(scheduler.list_jobs(), key=lambda info: info.job.id)
    listed = {info.job.id for info in infos}
    pending = [job for job_id, job in sorted(scheduler.declared.items()) if job_id not in listed]
    if not infos and not pending and not unreadable:
        report.ok("schedules", "no scheduled jobs")
        return
    report.ok(
        "schedules",
        f"{len(infos) + len(unreadable)} job(s) in Redis, {len(scheduler.declared)} declared in code",
    )
    for info in infos:
        job = info.job
        when = "paused" if job.paused else f"next {format_moment(_timestamp(info.next_run))} UTC"
        report.ok("schedule", f"{job.id}: {info.trigger_text}, {when}")
        if tm.tasks and job.task_name not in tm.tasks:
            report.warn("schedule", f"{job.id}: its task {job.task_name} is in no discovered module")
    for job in pending:
        report.ok(
            "schedule",
            f"{job.id}: {job.trigger.describe()}, declared in code, created when a scheduler starts",
        )
    for job_id, reason in sorted(unreadable.items()):
        report.fail("schedule", f"{job_id}: cannot be read ({reason}); aum schedule remove {job_id}")


def _check_workers(report: Report, tm: TaskManager) -> None:
    workers = tm.workers()
    if not workers:
        report.warn("workers", "none seen in the last 30 s (start one: aum worker)")
        return
    hosts = {worker.host for worker in workers}
    consumed = {queue for worker in workers for queue in worker.queues}
    report.ok(
        "workers",
        f"{len(workers)} process(es) on {len(hosts)} host(s), queue(s) {', '.join(sorted(consumed))}",
    )
    idle = sorted({task.queue_name for task in tm.tasks.values()} - consumed)
    if idle:
        report.warn("workers", f"no worker consumes queue(s) {', '.join(idle)}")


@contextlib.contextmanager
def _stopping_on_connection_errors(report: Report, tm: TaskManager) -> Iterator[None]:
    """A Redis that stops answering in the block: a FAIL line and exit 4."""
    try:
        with reaching_ledger(tm):
            yield
    except BrokerUnavailable as error:
        report.fail("ledger", error.message, error.exit_code, stop=True)


@contextlib.contextmanager
def _loguru_disabled(name: str) -> Iterator[None]:
    logger.disable(name)
    try:
        yield
    finally:
        logger.enable(name)


def _timestamp(moment: Any) -> float | None:
    return None if moment is None else float(moment.timestamp())
