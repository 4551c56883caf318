"""The scheduler's state in Redis: job definitions as JSON, the leader lease, fire claims, last runs.

Every scheduler process keeps APScheduler's jobs in memory and rebuilds them from here; any
process (a web app, ``aum schedule``) changes a job here and announces it on a channel, so the
leader applies it at once. Exactly one process fires: the holder of the leader lease. Every fire
first claims its (job, planned time) with ``SET NX``, so even two processes that both believe
they lead (a lease lost during a long pause) never enqueue the same tick twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import redis
from loguru import logger

from ..core.errors import SchedulerError
from ..core.keys import KeySpace
from ..redis.scripts import load_script
from .jobs import JobDefinition

#: Renew the leader lease only while we still hold it (``aury_tasks/redis/lua/renew_leader.lua``).
_RENEW = load_script("renew_leader")
#: Give the leader lease up only if we hold it (``aury_tasks/redis/lua/release_leader.lua``).
_RELEASE = load_script("release_leader")


@dataclass(frozen=True)
class LastRun:
    """A job's last fire."""

    #: UNIX time the fire was planned for.
    planned_at: float
    #: UNIX time the task was enqueued.
    fired_at: float
    #: The id of the task it sent.
    task_id: str


class ScheduleStore:
    """Job definitions, lease and fire claims in one Redis (``decode_responses=True`` client), under
    the scheduler prefix of ``keys``."""

    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.client = client
        #: The keys the jobs, lease and claims live under.
        self.keys = keys

    # Job definitions

    def put(self, job: JobDefinition) -> None:
        """Create or replace ``job`` and announce it."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.scheduler_jobs(), job.id, job.to_json())
        pipe.publish(self.keys.scheduler_changes(), f"put:{job.id}")
        pipe.execute()

    def get(self, job_id: str) -> JobDefinition | None:
        """The job with that id, or ``None``."""
        text = self.client.hget(self.keys.scheduler_jobs(), job_id)
        return JobDefinition.from_json(text) if text is not None else None

    def all(self) -> list[JobDefinition]:
        """Every job, by id.

        A definition that cannot be read (written by hand, or by another version) is left out
        with a warning naming it, so that one bad job never stops the others.
        """
        jobs = []
        for job_id, text in sorted(self.client.hgetall(self.keys.scheduler_jobs()).items()):
            try:
                jobs.append(JobDefinition.from_json(text))
            except (SchedulerError, ValueError) as exc:
                logger.warning("scheduled job {!r} in Redis cannot be read, left out: {}", job_id, exc)
        return jobs

    def remove(self, job_id: str) -> bool:
        """Delete the job; return whether it existed."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.keys.scheduler_jobs(), job_id)
        pipe.hdel(self.keys.scheduler_runs(), job_id)
        pipe.publish(self.keys.scheduler_changes(), f"remove:{job_id}")
        removed, _, _ = pipe.execute()
        return bool(removed)

    def clear(self) -> int:
        """Delete every job; return how many there were."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hlen(self.keys.scheduler_jobs())
        pipe.delete(self.keys.scheduler_jobs(), self.keys.scheduler_runs())
        pipe.publish(self.keys.scheduler_changes(), "clear")
        count, _, _ = pipe.execute()
        return int(count)

    def request_reload(self) -> int:
        """Ask the leading scheduler to load every job again; return how many schedulers heard it."""
        return int(self.client.publish(self.keys.scheduler_changes(), "reload"))

    # Fires

    def claim_fire(self, job_id: str, planned_at: float, ttl: float) -> bool:
        """Claim the fire of ``job_id`` planned for ``planned_at``; ``False`` if it was claimed before.

        Parameters:
          ttl: seconds the claim is kept: longer than any process could still try this fire.
        """
        key = self.keys.scheduler_fire(job_id, round(planned_at * 1000))
        return bool(self.client.set(key, "1", nx=True, px=max(1, int(ttl * 1000))))

    def record_run(self, job_id: str, run: LastRun) -> None:
        """Keep ``run`` as the last fire of ``job_id``, and count it (same round trip)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.keys.scheduler_runs(), job_id, json.dumps(run.__dict__))
        pipe.hincrby(self.keys.scheduler_fire_counts(), job_id, 1)
        pipe.execute()

    def count_miss(self, job_id: str) -> None:
        """Count a tick of ``job_id`` that was dropped for coming later than its grace time."""
        self.client.hincrby(self.keys.scheduler_miss_counts(), job_id, 1)

    def last_run(self, job_id: str) -> LastRun | None:
        """The last fire of ``job_id``, if it fired."""
        text: Any = self.client.hget(self.keys.scheduler_runs(), job_id)
        return None if text is None else LastRun(**json.loads(text))

    def last_runs(self) -> dict[str, LastRun]:
        """The last fire of every job that fired."""
        runs = cast("dict[str, str]", self.client.hgetall(self.keys.scheduler_runs()))
        return {job_id: LastRun(**json.loads(text)) for job_id, text in runs.items()}

    # The leader lease

    def acquire_lease(self, holder: str, ttl: float) -> bool:
        """Take the lease for ``ttl`` seconds if nobody holds it, or renew it if ``holder`` does."""
        ttl_ms = max(1, int(ttl * 1000))
        if self.client.set(self.keys.scheduler_leader(), holder, nx=True, px=ttl_ms):
            return True
        return bool(_RENEW(self.client, [self.keys.scheduler_leader()], [holder, ttl_ms]))

    def release_lease(self, holder: str) -> bool:
        """Give the lease up if ``holder`` holds it (a clean shutdown: the next leader starts at once)."""
        return bool(_RELEASE(self.client, [self.keys.scheduler_leader()], [holder]))

    def leader(self) -> str | None:
        """Who holds the lease now."""
        holder: Any = self.client.get(self.keys.scheduler_leader())
        return holder
