"""Every Redis key aury-tasks uses, under one prefix, and their lifetimes.

The only module that spells key strings: a change of layout happens here and nowhere else.

Every key of the toolkit and of Dramatiq's broker lives under one prefix (``TASK_KEY_PREFIX``,
default ``aury``): the broker's queues as ``<prefix>:<queue>``, the ledger under
``<prefix>:ledger:``, the scheduler under ``<prefix>:scheduler:``, the alerts under
``<prefix>:alerts:`` and flow control under ``<prefix>:limits:``. Two applications (or staging and
production) with different prefixes so share one Redis without seeing each other's tasks, and an
ACL user can be limited to ``~<prefix>:*``.

A :class:`KeySpace` is that prefix and the names built on it: every component (the broker, the
ledger, the scheduler's store, the alerts' store, flow control, the readers) holds the one it was
built with, never a process-wide one. The Lua scripts receive their prefixes in KEYS or ARGV (the
ledger's scripts :attr:`KeySpace.ledger_prefix`) and build keys with the same suffixes as here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: The key prefix when ``TASK_KEY_PREFIX`` is not set.
DEFAULT_PREFIX = "aury"

#: How long dead-lettered messages are kept (Dramatiq's ``dead_message_ttl``), in ms.
DEAD_MESSAGE_TTL_MS = 7 * 86_400_000

#: How long a task record (and its result) is kept, in seconds (7 days).
DEFAULT_RESULT_TTL = 7 * 86_400

#: How long per-minute statistics buckets are kept, in seconds (older windows use hour buckets).
MINUTE_BUCKET_TTL = 2 * 86_400

#: How long a minute of :meth:`KeySpace.time_limit_counts` is kept, in seconds.
TIME_LIMIT_COUNTS_TTL = 2 * 86_400

#: What a prefix may not contain: white space and the characters of a Redis glob pattern (a
#: prefix is matched by ``~<prefix>:*`` in an ACL and by ``<prefix>:wake:*`` in a subscription).
_FORBIDDEN = re.compile(r"[\s*?\[\]\\]")


def prefix_problem(prefix: str) -> str | None:
    """What is wrong with ``prefix`` as a key prefix, or ``None`` when it is a valid one."""
    if not prefix:
        return "an empty prefix"
    if _FORBIDDEN.search(prefix):
        return "white space or a glob character (* ? [ ] \\)"
    if prefix.endswith(":"):
        return "a trailing colon (the ':' is added)"
    return None


def delay_queue_name(queue_name: str) -> str:
    """Name of the delay queue Dramatiq keeps beside ``queue_name`` (a queue name, not a key)."""
    return f"{queue_name}.DQ"


@dataclass(frozen=True)
class KeySpace:
    """The keys under one prefix: each method names one key (or channel) of aury-tasks or Dramatiq.

    ``KeySpace("aury")`` (:data:`DEFAULT`) gives the keys of the default ``TASK_KEY_PREFIX``. The
    prefix is also the broker's ``namespace`` (Dramatiq's dispatch script builds its keys from it).

    Raises:
      ValueError: for a prefix :func:`prefix_problem` rejects.
    """

    prefix: str = DEFAULT_PREFIX
    #: Prefix of the task ledger's keys (records, indexes, counters), with its trailing colon.
    ledger_prefix: str = field(init=False, repr=False, compare=False)
    #: Prefix of the scheduler's keys (job definitions, leader lease, fire claims), with its colon.
    scheduler_prefix: str = field(init=False, repr=False, compare=False)
    #: Prefix of the alerts' keys (rules, incidents), with its colon.
    alerts_prefix: str = field(init=False, repr=False, compare=False)
    #: Prefix of the flow-control keys (rate windows, concurrency leases, uniqueness locks).
    limits_prefix: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problem = prefix_problem(self.prefix)
        if problem is not None:
            raise ValueError(f"invalid key prefix {self.prefix!r}: {problem}")
        # Built once: a key is then one f-string on the hot paths (a send, a fetch, an ack).
        for part in ("ledger", "scheduler", "alerts", "limits"):
            object.__setattr__(self, f"{part}_prefix", f"{self.prefix}:{part}:")

    def pattern(self) -> str:
        """The glob of every key under the prefix (``<prefix>:*``), as an ACL's ``~`` names it."""
        return f"{self.prefix}:*"

    # The ledger (aury_tasks.ledger)

    def task_record(self, task_id: str) -> str:
        """Hash holding one task's record."""
        return f"{self.ledger_prefix}task:{task_id}"

    def all_index(self) -> str:
        """Sorted set of every task id (score: enqueue time, ms)."""
        return f"{self.ledger_prefix}idx:all"

    def queue_index(self, queue_name: str) -> str:
        """Sorted set of the task ids sent to ``queue_name``."""
        return f"{self.ledger_prefix}idx:queue:{queue_name}"

    def task_name_index(self, task_name: str) -> str:
        """Sorted set of the ids of tasks of ``task_name``."""
        return f"{self.ledger_prefix}idx:task:{task_name}"

    def task_queue_index(self, task_name: str, queue_name: str) -> str:
        """Sorted set of the ids of tasks of ``task_name`` sent to ``queue_name``."""
        return f"{self.ledger_prefix}idx:task:{task_name}:queue:{queue_name}"

    def status_index(
        self, status: str, *, queue_name: str | None = None, task_name: str | None = None
    ) -> str:
        """Sorted set of the ids of tasks now in ``status`` (optionally of one queue or one task)."""
        if queue_name is not None:
            return f"{self.ledger_prefix}idx:status:{status}:queue:{queue_name}"
        if task_name is not None:
            return f"{self.ledger_prefix}idx:status:{status}:task:{task_name}"
        return f"{self.ledger_prefix}idx:status:{status}"

    def unindexed(self) -> str:
        """List of the ids of records a send wrote whose index entries are still to be added."""
        return f"{self.ledger_prefix}unindexed"

    def known_queues(self) -> str:
        """Set of every queue name the ledger has seen."""
        return f"{self.ledger_prefix}queues"

    def known_task_names(self) -> str:
        """Set of every task name the ledger has seen."""
        return f"{self.ledger_prefix}tasks"

    def idempotency_done(self, key: str) -> str:
        """Set once the task run for idempotency ``key`` succeeded; its value is that task's id."""
        return f"{self.ledger_prefix}done:{key}"

    def task_events(self, task_id: str) -> str:
        """Pub/sub channel announcing a task's status and progress changes."""
        return f"{self.ledger_prefix}events:{task_id}"

    def cancel_channel(self) -> str:
        """Pub/sub channel on which cancelled task ids are announced to workers."""
        return f"{self.ledger_prefix}cancel"

    def cancelled_ids(self) -> str:
        """Sorted set of cancelled task ids (score: cancel time, ms): what makes cancel durable."""
        return f"{self.ledger_prefix}cancelled"

    def stats_bucket(self, granularity: str, bucket: int, dimension: str = "") -> str:
        """Hash of counters for one minute (``m``) or hour (``h``) bucket.

        ``dimension`` is ``""`` for all tasks, ``q:<queue>`` or ``t:<task name>``.
        """
        suffix = f":{dimension}" if dimension else ""
        return f"{self.ledger_prefix}stats:{granularity}:{bucket}{suffix}"

    def workers(self) -> str:
        """Hash of live workers: worker id -> JSON (host, pid, queues, started)."""
        return f"{self.ledger_prefix}workers"

    def workers_seen(self) -> str:
        """Sorted set of worker ids by last heartbeat (ms)."""
        return f"{self.ledger_prefix}workers:seen"

    def maintenance_lock(self) -> str:
        """Lock taken by the one worker that trims the indexes in a given minute."""
        return f"{self.ledger_prefix}maintenance"

    def broker_queue(self, queue_name: str) -> str:
        """Dramatiq's list of message ids waiting in ``queue_name``."""
        return f"{self.prefix}:{queue_name}"

    def broker_messages(self, queue_name: str) -> str:
        """Dramatiq's hash of the messages of ``queue_name`` not yet acknowledged."""
        return f"{self.prefix}:{queue_name}.msgs"

    def broker_fetched(self, broker_id: str, queue_name: str) -> str:
        """Dramatiq's set of the message ids one broker instance fetched from ``queue_name``, unacked."""
        return f"{self.broker_fetched_prefix()}{broker_id}.{queue_name}"

    def broker_fetched_prefix(self) -> str:
        """The prefix of every worker's fetched sets (:meth:`broker_fetched` without its broker id and
        queue), for a script that walks the sets of the workers it finds dead."""
        return f"{self.prefix}:__acks__."

    def suspects(self, queue_name: str) -> str:
        """Hash of ``queue_name``'s messages held by a worker that died: delivery id -> deaths counted.

        See :mod:`aury_tasks.broker.redis.recovery`.
        """
        return f"{self.prefix}:suspects:{queue_name}"

    def running_suspects(self, queue_name: str) -> str:
        """Hash of the suspects of ``queue_name`` a worker started: delivery id -> that worker's broker id."""
        return f"{self.prefix}:running-suspects:{queue_name}"

    def dead_letters(self, queue_name: str) -> str:
        """Dramatiq's dead-letter sorted set of ``queue_name`` (score: time of death, ms)."""
        return f"{self.prefix}:{queue_name}.XQ"

    def dead_letter_messages(self, queue_name: str) -> str:
        """Dramatiq's hash of the dead-lettered messages of ``queue_name``."""
        return f"{self.prefix}:{queue_name}.XQ.msgs"

    def scheduler_jobs(self) -> str:
        """Hash of the scheduled jobs: job id -> its definition as JSON."""
        return f"{self.scheduler_prefix}jobs"

    def scheduler_runs(self) -> str:
        """Hash of each job's last fire: job id -> JSON (when, planned time, task id)."""
        return f"{self.scheduler_prefix}runs"

    def scheduler_changes(self) -> str:
        """Channel announcing a changed or removed job (message: ``put:<id>``, ``remove:<id>``, ``clear``)."""
        return f"{self.scheduler_prefix}changes"

    def scheduler_leader(self) -> str:
        """The leader lease: the id of the scheduler process that fires, expiring unless renewed."""
        return f"{self.scheduler_prefix}leader"

    def scheduler_fire(self, job_id: str, fire_time_ms: int) -> str:
        """Claim of one planned fire of one job (``SET NX``): whoever sets it enqueues the tick."""
        return f"{self.scheduler_prefix}fire:{job_id}:{fire_time_ms}"

    def scheduler_fire_counts(self) -> str:
        """Hash of how many ticks each job sent since it was first fired: job id -> count (only grows)."""
        return f"{self.scheduler_prefix}fired"

    def scheduler_miss_counts(self) -> str:
        """Hash of how many ticks each job missed (later than its ``misfire_grace_time``): job id -> count."""
        return f"{self.scheduler_prefix}missed"

    def time_limit_counts(self, minute: int) -> str:
        """Hash of the tasks that hit their time limit in one minute (UNIX minute): ``""`` (all),
        ``q:<queue>`` and ``t:<task name>`` -> count. Written only when it happens; read by the alerts."""
        return f"{self.ledger_prefix}timelimits:{minute}"

    # Workflows (aury_tasks.workflows)

    def group_state(self, group_id: str) -> str:
        """Hash of one group of a workflow: member results by index, the done count, its continuation."""
        return f"{self.ledger_prefix}group:{group_id}"

    # Flow control (aury_tasks.middleware.limits)

    def rate_limit(self, task_name: str) -> str:
        """Key (Dramatiq's window rate limiter adds its own suffixes) of ``task_name``'s rate limit."""
        return f"{self.limits_prefix}rate:{task_name}"

    def concurrency_leases(self, task_name: str) -> str:
        """Sorted set of the runs of ``task_name`` holding a concurrency slot (score: lease expiry, ms)."""
        return f"{self.limits_prefix}concurrency:{task_name}"

    def unique_lock(self, task_name: str, digest: str) -> str:
        """Holds the id of the pending or running task of ``task_name`` whose unique key digests to
        ``digest``."""
        return f"{self.limits_prefix}unique:{task_name}:{digest}"

    def priority_queue(self, queue_name: str) -> str:
        """Sorted set of the ids of ``queue_name``'s messages sent with a priority above 0, waiting.

        Score orders them highest priority first, then oldest first; a fetch moves them to the front
        of the queue's list (see :mod:`aury_tasks.broker.redis.priority`).
        """
        return f"{self.prefix}:{queue_name}.PQ"

    def priority_sequence(self, queue_name: str) -> str:
        """Counter numbering ``queue_name``'s priority sends, so that equal priorities keep their order."""
        return f"{self.prefix}:{queue_name}.PQ.seq"

    def broker_heartbeats(self) -> str:
        """Dramatiq's sorted set of broker instances by last call (ms): a stale one is a dead worker."""
        return f"{self.prefix}:__heartbeats__"

    def doctor_probe(self) -> str:
        """The key ``aum doctor`` names when it asks Redis (``ACL DRYRUN``) whether a command is allowed
        on the broker's keys; never written."""
        return f"{self.prefix}:doctor"

    def workflow_owed(self) -> str:
        """Sorted set of fired groups whose continuation is not known to be started (score: fired at, ms).

        A worker that fires a group (the join rides on a member's ack) starts the continuation and
        removes the entry; an entry left behind by a worker that died is taken over by another.
        """
        return f"{self.ledger_prefix}owed"

    def wake_channel(self, queue_name: str) -> str:
        """Channel told when a message arrives on ``queue_name`` while a consumer of it idles.

        See :mod:`aury_tasks.broker.redis.wakeup`; a delay queue (``<queue>.DQ``) has its own.
        """
        return f"{self.prefix}:wake:{queue_name}"

    def wake_pattern(self) -> str:
        """Pattern of every queue's :meth:`wake_channel`: one subscription per worker process."""
        return f"{self.prefix}:wake:*"

    def wake_stop_channel(self, waker_id: str) -> str:
        """Channel one wake-up thread listens on to be told to stop (outside :meth:`wake_pattern`)."""
        return f"{self.prefix}:wake-stop:{waker_id}"

    def idle_marker(self, queue_name: str) -> str:
        """Set by a fetch of ``queue_name`` that found nothing; the next send deletes it and wakes
        consumers."""
        return f"{self.prefix}:idle:{queue_name}"

    # Alerts (aury_tasks.alerts)

    def alert_rules(self) -> str:
        """Hash of the alert rules added with ``aum alerts add``: rule name -> its JSON."""
        return f"{self.alerts_prefix}rules"

    def alert_incidents(self) -> str:
        """Hash of each rule's incident (breached since, firing since): rule name -> JSON."""
        return f"{self.alerts_prefix}incidents"


#: The keys of the default prefix (``aury``).
DEFAULT = KeySpace(DEFAULT_PREFIX)
