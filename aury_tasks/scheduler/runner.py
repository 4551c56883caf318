"""The scheduler process: wait for the leader lease, and while holding it, fire the jobs.

Every scheduler process runs a :class:`SchedulerRunner`. It renews or takes the lease every
``renew_interval`` seconds; the one that holds it loads every job from Redis into APScheduler
(its in-memory job store) and fires them, the others keep APScheduler paused and empty. A
change announced on the changes channel is applied by the leader at once. A fire claims its
(job, planned time) with ``SET NX`` before it sends, so no tick is sent twice, even by two
processes that both believe they lead; a send tried again across a failover carries the tick's
idempotency key, so a tick whose first send was stored after all still runs once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import redis
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from loguru import logger

from ..core.errors import AuryTasksError, BrokerUnavailable, SchedulerError
from ..redis.channels import follow_channel
from ..redis.outage import patiently, redis_back, redis_lost
from .jobs import JobDefinition
from .manager import SchedulerManager
from .store import LastRun
from .triggers import build_trigger

if TYPE_CHECKING:
    from ..tasks.handle import TaskHandle

#: Seconds a fire claim is kept at least (longer than any process could still try that fire).
MIN_CLAIM_TTL = 3600.0
#: Seconds between two tries of a tick's send while the broker cannot be reached (a failover).
SEND_RETRY_PAUSE = 0.5

#: The parts of a scheduler process that report a lost Redis (:mod:`aury_tasks.redis.outage`),
#: each on its own, so that one reaching Redis does not say it is back while another still fails
#: (the sends, waiting for replicas, after a failover).
LEASE, RECORDS, SENDS = "scheduler lease", "scheduler fire records", "scheduler sends"

#: Work only the leader does: called with ``is_leader()`` and the event set when the runner stops.
LeaderWork = Callable[[Callable[[], bool], threading.Event], None]


class _PlannedJob:
    """An APScheduler job whose function also receives the time the run was planned for."""

    def __init__(self, job: Job, run_time: datetime) -> None:
        self._job = job
        self.args = (*job.args, run_time)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)


class _PlannedTimeExecutor(ThreadPoolExecutor):
    """APScheduler's thread pool executor, handing each run its planned time (for the fire claim).

    APScheduler drops a fire that comes while ``max_instances`` runs of its job are still going.
    Here a run is only a send, slow only while Redis is, so a fire that finds every instance busy
    waits for one (its ``misfire_grace_time`` still applies) instead of being lost.
    """

    def __init__(self, max_workers: int = 8) -> None:
        super().__init__(max_workers=max_workers)
        self._slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}

    def submit_job(self, job: Job, run_times: list[datetime]) -> None:
        with self._lock:  # as APScheduler's, without its MaxInstancesReachedError
            self._do_submit_job(job, run_times)
            self._instances[job.id] += 1

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        slot = self._slots.setdefault(
            (job.id, job.max_instances), threading.BoundedSemaphore(job.max_instances)
        )

        def run_all() -> list[Any]:
            events: list[Any] = []
            with slot:
                for run_time in run_times:
                    events += run_job(
                        _PlannedJob(job, run_time), job._jobstore_alias, [run_time], self._logger.name
                    )
            return events

        def done(future: Any) -> None:
            exception = future.exception()
            if exception is not None:
                self._run_job_error(job.id, exception, exception.__traceback__)
            else:
                self._run_job_success(job.id, future.result())

        self._pool.submit(run_all).add_done_callback(done)


class SchedulerRunner:
    """One scheduler process: a candidate for the lease, and the firer while it leads.

    Parameters:
      lease_ttl: seconds the lease lasts unless renewed (a dead leader is replaced within it).
      renew_interval: seconds between renewals (well inside ``lease_ttl``).
      while_leading: work only the leader does, each in a thread of its own, called with a function
        that tells whether this process leads and the event set when it stops (``aum scheduler``
        gives the alert loop, :func:`aury_tasks.alerts.service.alert_loop`).
    """

    def __init__(
        self,
        manager: SchedulerManager,
        *,
        lease_ttl: float = 3.0,
        renew_interval: float = 0.6,
        while_leading: Sequence[LeaderWork] = (),
    ) -> None:
        if not 0 < renew_interval < lease_ttl:
            raise ValueError("renew_interval must be above 0 and below lease_ttl")
        self.manager = manager
        self.while_leading = tuple(while_leading)
        self.store = manager.store
        self.lease_ttl = lease_ttl
        self.renew_interval = renew_interval
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.is_leader = False
        self.scheduler = BackgroundScheduler(
            timezone=timezone.utc, executors={"default": _PlannedTimeExecutor(max_workers=8)}
        )
        self.scheduler.add_listener(self._count_miss, EVENT_JOB_MISSED)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.RLock()
        #: The definitions of the jobs loaded into APScheduler (kept current by the change feed).
        self._jobs: dict[str, JobDefinition] = {}

    # Life

    def start(self) -> None:
        """Write the jobs declared in code, then run for the lease (in background threads)."""
        self.write_declared_jobs()
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not a line per fire: ours says more
        self.scheduler.start(paused=True)
        threads: list[tuple[Callable[[], None], str]] = [
            (self._lease_loop, "aury-scheduler-lease"),
            (self._listen, "aury-scheduler-changes"),
        ]
        threads += [(functools.partial(work, lambda: self.is_leader, self._stopping),
                     f"aury-scheduler-{work.__name__}") for work in self.while_leading]  # fmt: skip
        for target, name in threads:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop firing and give the lease up, so another process leads at once (once; again: nothing)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=self.renew_interval + 2)
        with self._lock:
            self._follow()
        with contextlib.suppress(redis.RedisError):
            self.store.release_lease(self.holder)
        self.scheduler.shutdown(wait=False)

    def write_declared_jobs(self) -> None:
        """Create or update the jobs declared with ``@scheduled_task`` (a deploy changes them).

        A job whose definition is unchanged is left as it is (and so is its paused state).
        """
        for declared in self.manager.declared.values():
            stored = self.store.get(declared.id)
            if stored is not None and _same_schedule(stored, declared):
                continue
            job = declared if stored is None else stored.changed(
                task_name=declared.task_name, queue_name=declared.queue_name, trigger=declared.trigger,
                args=declared.args, kwargs=declared.kwargs, options=declared.options, origin="code",
            )  # fmt: skip
            self.store.put(job)
            logger.info("scheduled job {} {}", job.id, "created" if stored is None else "updated from code")

    # The lease

    def _lease_loop(self) -> None:
        announced = False
        while not self._stopping.is_set():
            try:
                held = self.store.acquire_lease(self.holder, self.lease_ttl)
                redis_back(LEASE)
            except redis.RedisError as exc:
                redis_lost(LEASE, exc)
                held = False
            with self._lock:
                try:
                    if held and not self.is_leader:
                        self._lead()
                    elif not held and self.is_leader:
                        self._follow()
                    elif not held and not announced:
                        logger.info("scheduler {} stands by: {} leads", self.holder, self._current_leader())
                except redis.RedisError as exc:  # lost again while loading the jobs: lead next time
                    redis_lost(LEASE, exc)
                    self._follow()
            announced = True
            self._stopping.wait(self.renew_interval)

    def _current_leader(self) -> str:
        with contextlib.suppress(redis.RedisError):
            return self.store.leader() or "nobody"
        return "unknown"

    def _lead(self) -> None:
        self.is_leader = True
        self._load_all()
        self.scheduler.resume()
        logger.info("scheduler {} leads: {} job(s)", self.holder, len(self.scheduler.get_jobs()))

    def _follow(self) -> None:
        if self.is_leader:
            logger.info("scheduler {} no longer leads", self.holder)
        self.is_leader = False
        if self.scheduler.running:
            self.scheduler.pause()
            self._unload_all()

    # Jobs

    def _load_all(self) -> None:
        self._unload_all()
        last_runs = self.store.last_runs()
        for job in self.store.all():
            try:
                self._load(job, last_runs.get(job.id))
            except SchedulerError as exc:  # one bad job never stops the others
                logger.warning("scheduled job {!r} cannot be loaded, left out: {}", job.id, exc)

    def _load(self, job: JobDefinition, last_run: LastRun | None) -> None:
        if job.paused:
            self._unload(job.id)
            return
        trigger = build_trigger(job.trigger)
        due = first_due(trigger, job, last_run)
        if due is None:  # a one-off job that has fired
            self._unload(job.id)
            return
        options = job.options
        self._jobs[job.id] = job
        self.scheduler.add_job(
            self._fire, trigger=trigger, id=job.id, name=job.id, args=[job.id], next_run_time=due,
            replace_existing=True, coalesce=options.coalesce, max_instances=options.max_instances,
            misfire_grace_time=int(options.misfire_grace_time) or 1, jitter=options.jitter,
        )  # fmt: skip

    def _unload(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        with contextlib.suppress(JobLookupError):
            self.scheduler.remove_job(job_id)

    def _unload_all(self) -> None:
        self._jobs.clear()
        self.scheduler.remove_all_jobs()

    def _listen(self) -> None:
        follow_channel(
            self.store.client, self.store.keys.scheduler_changes(), stopping=self._stopping,
            caught_up=self._catch_up, received=self._apply, poll_seconds=0.5,
            lost="scheduler lost its change feed",
        )  # fmt: skip

    def _catch_up(self) -> None:
        with self._lock:
            if self.is_leader:
                self._load_all()  # whatever changed while we were not listening

    def _apply(self, change: str) -> None:
        action, _, job_id = change.partition(":")
        with self._lock:
            if not self.is_leader:
                return
            if action == "put":
                try:
                    job = self.store.get(job_id)
                    if job is None:
                        self._unload(job_id)
                    else:
                        self._load(job, self.store.last_run(job_id))
                except SchedulerError as exc:
                    self._unload(job_id)
                    logger.warning("scheduled job {!r} cannot be loaded, left out: {}", job_id, exc)
            elif action == "remove":
                self._unload(job_id)
            elif action == "clear":
                self._unload_all()
            elif action == "reload":
                self._load_all()

    def _count_miss(self, event: JobExecutionEvent) -> None:
        # APScheduler logs the miss itself; the count is what /metrics shows.
        with contextlib.suppress(redis.RedisError):
            self.store.count_miss(event.job_id)

    def _fire(self, job_id: str, planned: datetime | None = None) -> None:
        """Send one planned tick of ``job_id``, unless another process (or an earlier try) did.

        ``planned`` comes from :class:`_PlannedTimeExecutor` (the default only satisfies
        APScheduler's check of the arguments when the job is added).
        """
        job = self._jobs.get(job_id)
        if not self.is_leader or planned is None or job is None:
            return
        ttl = max(MIN_CLAIM_TTL, 2 * job.options.misfire_grace_time)
        if not patiently(RECORDS, lambda: self.store.claim_fire(job_id, planned.timestamp(), ttl)):
            logger.debug("tick {} of {} was sent already", planned.isoformat(), job_id)
            return
        handle = self._send(job, planned.timestamp(), planned.timestamp() + job.options.misfire_grace_time)
        if handle is None:
            return
        run = LastRun(planned_at=planned.timestamp(), fired_at=time.time(), task_id=handle.id)
        patiently(RECORDS, lambda: self.store.record_run(job_id, run))
        logger.info("scheduled job {} sent {} as task {}", job_id, job.task_name, handle.id)

    def _send(self, job: JobDefinition, planned_at: float, give_up_at: float) -> TaskHandle | None:
        """Send the tick's task, trying again while the broker cannot be reached (a failover), until
        ``give_up_at`` (its misfire grace time); ``None`` when it was not sent (logged).

        A send that failed may have been stored all the same (its reply lost, or the replicas of
        ``TASK_BROKER_MIN_REPLICAS`` late: a ``ReplicationTimeout``). Every send of the tick carries
        the tick's idempotency key, so trying again never runs the tick twice.
        """
        while True:
            try:
                handle = self.manager.send(job, planned_at)
            except BrokerUnavailable as exc:  # ReplicationTimeout too: kept or not, the key dedupes
                if time.time() >= give_up_at or self._stopping.is_set():
                    logger.error("scheduled job {} could not send {}: {}", job.id, job.task_name, exc)
                    return None
                redis_lost(SENDS, exc)
                time.sleep(SEND_RETRY_PAUSE)
                continue
            except AuryTasksError as exc:
                logger.error("scheduled job {} could not send {}: {}", job.id, job.task_name, exc)
                return None
            redis_back(SENDS)
            return handle


def first_due(trigger: BaseTrigger, job: JobDefinition, last_run: LastRun | None) -> datetime | None:
    """The first fire of ``job`` not yet sent: after its last fire, or its last change if later.

    This is what makes a takeover (or a restart) lose no tick: a fire planned while no scheduler
    led is still due, and APScheduler sends it at once if it is within ``misfire_grace_time``
    (one send for several, with ``coalesce``). ``None``: a one-off job that has fired.
    """
    anchor = job.updated_at
    if last_run is not None:
        anchor = max(anchor, last_run.planned_at + 0.001)
    since = datetime.fromtimestamp(anchor, timezone.utc)
    due: datetime | None = trigger.get_next_fire_time(None, since)
    if due is None or due < since:  # a date trigger gives its date whatever "now" is
        return None
    return due


def _same_schedule(stored: JobDefinition, declared: JobDefinition) -> bool:
    fields = ("task_name", "queue_name", "trigger", "args", "kwargs", "options")
    return all(getattr(stored, name) == getattr(declared, name) for name in fields)
