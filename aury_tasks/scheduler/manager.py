"""SchedulerManager: scheduled jobs that enqueue tasks, managed from any process.

Adding, changing and removing jobs writes their JSON definition to Redis (see
:mod:`aury_tasks.scheduler.store`) and announces the change; the scheduler process that holds
the leader lease fires them. Nothing here starts a scheduler: a web app that adds a job only
writes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import q_name
from loguru import logger

from ..core.errors import LedgerUnavailable, ScheduledJobNotFound, SchedulerError
from ..core.instances import NamedInstances
from ..core.sentinel_url import is_sentinel_url
from ..core.status import TaskStatus
from ..redis.connect import sync_client
from ..tasks.handle import TaskHandle
from ..tasks.manager import TaskManager
from ..tasks.task import Task, enqueue
from .dst import dst_warnings
from .jobs import JobDefinition, JobOptions, tick_idempotency_key
from .store import LastRun, ScheduleStore
from .triggers import CronCheck, TriggerSpec, next_fire_times, trigger_spec, validate_cron

if TYPE_CHECKING:
    from ..config.snapshot import Settings

#: Where the grid of an interval declared in code starts.
_EPOCH = "1970-01-01T00:00:00+00:00"

#: The SchedulerManagers of this process, one per TaskManager name.
schedulers: NamedInstances[SchedulerManager] = NamedInstances("SchedulerManager")


@dataclass(frozen=True)
class JobInfo:
    """A job as :meth:`SchedulerManager.list_jobs` shows it."""

    job: JobDefinition
    #: When it fires next (``None``: paused, or a date trigger that has passed).
    next_run: datetime | None
    #: Its last fire, if it fired.
    last_run: LastRun | None
    #: The status of the task its last fire sent, when the ledger knows it.
    last_status: TaskStatus | None

    @property
    def trigger_text(self) -> str:
        """The trigger as short text, e.g. ``cron 0 2 * * * (UTC)``."""
        return self.job.trigger.describe()


class SchedulerManager:
    """Scheduled jobs of one :class:`~aury_tasks.TaskManager`: add, list, pause, change, remove.

    >>> scheduler = SchedulerManager.get_instance()
    >>> scheduler.add_job(func=daily_cleanup.send, trigger="cron", hour=2, id="daily_cleanup")
    >>> scheduler.add_job(func=sync_prices, interval=300)          # every 5 minutes
    >>> scheduler.add_job(func=report.send, cron="0 8 * * 1-5", kwargs={"kind": "daily"})
    """

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self._store: ScheduleStore | None = None
        #: Jobs declared in code with :meth:`scheduled_task`, put in Redis when a scheduler starts.
        self.declared: dict[str, JobDefinition] = {}

    @classmethod
    def get_instance(cls, name: str = "default") -> SchedulerManager:
        """The scheduler of the TaskManager of the same name (created on first use)."""
        instance: SchedulerManager = schedulers.get(name, cls)
        return instance

    @classmethod
    def reset_instance(cls, name: str | None = None) -> None:
        """Forget one scheduler (or all): for tests."""
        schedulers.reset(name)

    @property
    def task_manager(self) -> TaskManager:
        """The TaskManager whose tasks the jobs send."""
        return TaskManager.get_instance(self.name)

    @property
    def settings(self) -> Settings:
        return self.task_manager.settings

    @property
    def store(self) -> ScheduleStore:
        """Where the jobs are kept: ``TASK_RESULT_BACKEND_URL``, else the broker's Redis.

        Raises:
          SchedulerError: when neither is a Redis.
        """
        if self._store is None:
            self._store = ScheduleStore(self._redis_client(), self.task_manager.keys)
        return self._store

    def _redis_client(self) -> redis.Redis:
        url = self.settings.result_backend_url_value
        if url:
            return sync_client(url, decode_responses=True)
        broker = self.task_manager.broker
        if not isinstance(broker, RedisBroker):
            raise SchedulerError(
                "scheduled jobs are kept in Redis: set TASK_RESULT_BACKEND_URL to a Redis URL"
            )
        broker_url = self.settings.broker_url_value
        if broker_url and is_sentinel_url(broker_url):
            return sync_client(broker_url, decode_responses=True)  # the master its sentinels name
        pool = broker.client.connection_pool  # the broker's server (also the embedded one), text replies
        return redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, **{**pool.connection_kwargs, "decode_responses": True}
        ))  # fmt: skip

    # Adding jobs

    def add_job(
        self,
        func: Callable[..., Any] | Task[Any, Any] | str,
        trigger: str | None = None,
        *,
        id: str | None = None,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        cron: str | None = None,
        interval: float | timedelta | None = None,
        run_at: datetime | str | None = None,
        timezone: str | None = None,
        coalesce: bool | None = None,
        max_instances: int | None = None,
        misfire_grace_time: float | None = None,
        jitter: float | None = None,
        paused: bool = False,
        replace_existing: bool = True,
        **trigger_args: Any,
    ) -> JobDefinition:
        """Schedule ``func`` (a task, or its ``.send``) to be sent by a trigger; return the job.

        The trigger is APScheduler's (``trigger="cron", hour=2``; ``"interval", minutes=5``;
        ``"date", run_date=…``) or a shorthand: ``cron="0 2 * * *"`` (five fields, day of week
        0 = Sunday), ``interval=SECONDS``, ``run_at=DATETIME``. The job keeps the task's name,
        queue and arguments as JSON; ``id`` defaults to the task's name.

        Raises:
          SchedulerError: for a wrong trigger (naming the field), an unknown task, or an
            existing id when ``replace_existing`` is false.
          SerializationError: for arguments that are not JSON.
        """
        task = self._task(func)
        job_id = id or task.name
        if not replace_existing and self.store.get(job_id) is not None:
            raise SchedulerError(f"a job {job_id!r} exists already (replace_existing=False)")
        forms = {"cron": cron, "interval": interval, "run_at": run_at, "timezone": timezone}
        spec = self._trigger({"trigger": trigger, **forms, **trigger_args})
        job = JobDefinition(
            id=job_id,
            task_name=task.name,
            queue_name=task.queue_name,
            trigger=spec,
            args=list(args or ()),
            kwargs=dict(kwargs or {}),
            options=self._options(coalesce, max_instances, misfire_grace_time, jitter),
            paused=paused,
        )
        self.store.put(job)
        return job

    def scheduled_task(
        self, *, id: str | None = None, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None,
        **trigger: Any,
    ) -> Callable[[Task[Any, Any]], Task[Any, Any]]:  # fmt: skip
        """Declare a schedule for a task in code, stacked on its decorator.

        >>> @scheduler.scheduled_task(cron="0 0 * * *")
        ... @tm.conditional_task(queue_name="batch")
        ... def nightly_rollup() -> None: ...

        The job (id: the task's name unless given) is created or updated when a scheduler
        starts, so a deploy changes it; the trigger is checked here, at import. An interval
        counts from the UNIX epoch (``interval=30`` fires at :00 and :30 of each minute), so
        every process and every deploy plans the same fire times.
        """
        options = {name: trigger.pop(name) for name in ("coalesce", "max_instances", "misfire_grace_time",
                                                        "jitter") if name in trigger}  # fmt: skip
        spec = self._trigger(trigger)
        if spec.kind == "interval" and "start_date" not in trigger:
            # The grid of a declared interval must not move with each import (each process, each
            # deploy would plan other fire times): it counts from the UNIX epoch.
            spec = replace(spec, fields={**spec.fields, "start_date": _EPOCH})

        def declare(task: Task[Any, Any]) -> Task[Any, Any]:
            if not isinstance(task, Task):
                raise SchedulerError("@scheduled_task goes above @tm.conditional_task (it schedules a task)")
            job = JobDefinition(
                id=id or task.name,
                task_name=task.name,
                queue_name=task.queue_name,
                trigger=spec,
                args=list(args or ()),
                kwargs=dict(kwargs or {}),
                options=self._options(**options),
                origin="code",
            )
            self.declared[job.id] = job
            return task

        return declare

    # Reading jobs

    def get_job(self, job_id: str) -> JobDefinition:
        """The job with that id.

        Raises:
          ScheduledJobNotFound: when there is none (exit code 2 in the CLI).
        """
        job = self.store.get(job_id)
        if job is None:
            known = ", ".join(sorted(j.id for j in self.store.all())) or "none"
            raise ScheduledJobNotFound(f"no scheduled job {job_id!r}; jobs: {known}")
        return job

    def list_jobs(self) -> list[JobInfo]:
        """Every job with its next run, its last run and the status of the task that run sent."""
        return self._infos(self.store.all(), self.store.last_runs())

    def job_info(self, job_id: str) -> JobInfo:
        """One job as :meth:`list_jobs` shows it.

        Raises:
          ScheduledJobNotFound: when there is none.
        """
        job = self.get_job(job_id)
        run = self.store.last_run(job_id)
        return self._infos([job], {job_id: run} if run else {})[0]

    def _infos(self, jobs: list[JobDefinition], runs: dict[str, LastRun]) -> list[JobInfo]:
        statuses = self._statuses([run.task_id for run in runs.values()])
        infos = []
        for job in jobs:
            run = runs.get(job.id)
            upcoming = [] if job.paused else next_fire_times(job.trigger, 1)
            infos.append(JobInfo(job, upcoming[0] if upcoming else None, run,
                                 statuses.get(run.task_id) if run else None))  # fmt: skip
        return infos

    def validate_cron(self, expression: str, *, count: int = 5, timezone: str | None = None) -> CronCheck:
        """Whether a five-field crontab is valid, why not, its next ``count`` fire times, and
        what daylight saving time changes in ``timezone`` will do to its runs."""
        zone = timezone or self.settings.scheduler_timezone
        check = validate_cron(expression, count=count, timezone=zone)
        if not check.valid:
            return check
        return replace(check, warnings=dst_warnings(trigger_spec(cron=expression, timezone=zone)))

    # Changing jobs

    def pause_job(self, job_id: str) -> JobDefinition:
        """Stop firing the job until :meth:`resume_job`."""
        return self._change(job_id, paused=True)

    def resume_job(self, job_id: str) -> JobDefinition:
        """Fire the job again from its next planned time."""
        return self._change(job_id, paused=False)

    def update_job(
        self,
        job_id: str,
        *,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        coalesce: bool | None = None,
        max_instances: int | None = None,
        misfire_grace_time: float | None = None,
        jitter: float | None = None,
        **trigger: Any,
    ) -> JobDefinition:
        """Change a job's trigger (any ``add_job`` form), arguments or options; the rest stays."""
        job = self.get_job(job_id)
        changes: dict[str, Any] = {}
        if trigger:
            changes["trigger"] = self._trigger(trigger)
        if args is not None:
            changes["args"] = list(args)
        if kwargs is not None:
            changes["kwargs"] = dict(kwargs)
        given: dict[str, Any] = {"coalesce": coalesce, "max_instances": max_instances,
                                 "misfire_grace_time": misfire_grace_time, "jitter": jitter}  # fmt: skip
        if any(value is not None for value in given.values()):
            current = job.options.__dict__
            changes["options"] = JobOptions(**{k: current[k] if v is None else v for k, v in given.items()})
        return self._put(job.changed(**changes))

    def remove_job(self, job_id: str) -> None:
        """Delete the job.

        Raises:
          ScheduledJobNotFound: when there is none.
        """
        if not self.store.remove(job_id):
            raise ScheduledJobNotFound(f"no scheduled job {job_id!r}")

    def refresh(self) -> int:
        """Make the leading scheduler load every job from Redis again (after editing them by hand).

        Returns:
          int: how many scheduler processes heard the request (0: none is running).
        """
        return self.store.request_reload()

    def leader(self) -> str | None:
        """The scheduler process that fires the jobs now (``host:pid:…``), or ``None``."""
        return self.store.leader()

    def clear(self) -> int:
        """Delete every job; return how many there were."""
        return self.store.clear()

    def run_job_now(self, job_id: str) -> TaskHandle:
        """Send the job's task now, once, outside its schedule (its planned fires are unchanged)."""
        job = self.get_job(job_id)
        handle = self.send(job)
        now = time.time()
        self.store.record_run(job.id, LastRun(planned_at=now, fired_at=now, task_id=handle.id))
        return handle

    def send(self, job: JobDefinition, planned_at: float | None = None) -> TaskHandle:
        """Enqueue one message of ``job``'s task: by name, with the job's arguments.

        ``planned_at``: the time (epoch seconds) of the tick this send is; the message then
        carries the tick's idempotency key (:func:`tick_idempotency_key`), so that the same tick
        sent again (a send tried again after its reply was lost in a failover) does not run twice.
        """
        options: dict[str, Any] = {"metadata": {"scheduled_job": job.id}}
        if planned_at is not None:
            options["idempotency_key"] = tick_idempotency_key(job.id, planned_at)
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=q_name(job.queue_name),
            actor_name=job.task_name,
            args=tuple(job.args),
            kwargs=dict(job.kwargs),
            options=options,
        )
        return enqueue(self.task_manager, message)

    # Helpers

    def _task(self, func: Callable[..., Any] | Task[Any, Any] | str) -> Task[Any, Any]:
        if isinstance(func, Task):
            return func
        owner = getattr(func, "__self__", None)
        if isinstance(owner, Task):
            return owner
        if isinstance(func, str):
            return self.task_manager.get_task(func)  # TaskNotFound names close matches
        raise SchedulerError(
            f"func must be a task or its .send (a function declared with @tm.conditional_task), got {func!r}"
        )

    def _trigger(self, arguments: dict[str, Any]) -> TriggerSpec:
        """The spec of a trigger given in any form; a daylight saving time surprise is logged."""
        given = {name: value for name, value in arguments.items() if value is not None}
        spec = trigger_spec(given.pop("trigger", None), default_timezone=self.settings.scheduler_timezone,
                            **given)  # fmt: skip
        for warning in dst_warnings(spec):
            logger.warning(warning)
        return spec

    def _options(
        self,
        coalesce: bool | None = None,
        max_instances: int | None = None,
        misfire_grace_time: float | None = None,
        jitter: float | None = None,
    ) -> JobOptions:
        settings = self.settings
        return JobOptions(
            coalesce=settings.scheduler_coalesce if coalesce is None else coalesce,
            max_instances=settings.scheduler_max_instances if max_instances is None else max_instances,
            misfire_grace_time=settings.scheduler_misfire_grace_time
            if misfire_grace_time is None
            else misfire_grace_time,
            jitter=jitter,
        )

    def _change(self, job_id: str, **changes: Any) -> JobDefinition:
        return self._put(self.get_job(job_id).changed(**changes))

    def _put(self, job: JobDefinition) -> JobDefinition:
        self.store.put(job)
        return job

    def _statuses(self, task_ids: list[str]) -> dict[str, TaskStatus]:
        if not task_ids:
            return {}
        try:
            records = self.task_manager.store.get_many(task_ids)
        except LedgerUnavailable:
            return {}
        return {record.id: record.status for record in records}
