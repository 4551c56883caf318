"""Every Redis key prefix aury-tasks uses, and their lifetimes.

The only module that spells key strings: a change of layout happens here and nowhere else.
The ledger's Lua scripts receive :data:`LEDGER_PREFIX` and build the per-task index keys with
the same suffixes as the functions below.
"""

from __future__ import annotations

#: Namespace of the broker's own keys (Dramatiq's queues, delay queues, heartbeats, acks).
#: Separate from Dramatiq's default ``dramatiq`` so both can share one Redis.
BROKER_NAMESPACE = "aury"

#: How long dead-lettered messages are kept (Dramatiq's ``dead_message_ttl``), in ms.
DEAD_MESSAGE_TTL_MS = 7 * 86_400_000

#: Prefix of the task ledger's keys (records, indexes, counters), with its trailing colon.
LEDGER_PREFIX = "aury:ledger:"

#: How long a task record (and its result) is kept, in seconds (7 days).
DEFAULT_RESULT_TTL = 7 * 86_400

#: How long per-minute statistics buckets are kept, in seconds (older windows use hour buckets).
MINUTE_BUCKET_TTL = 2 * 86_400


def task_record(task_id: str) -> str:
    """Hash holding one task's record."""
    return f"{LEDGER_PREFIX}task:{task_id}"


def all_index() -> str:
    """Sorted set of every task id (score: enqueue time, ms)."""
    return f"{LEDGER_PREFIX}idx:all"


def queue_index(queue_name: str) -> str:
    """Sorted set of the task ids sent to ``queue_name``."""
    return f"{LEDGER_PREFIX}idx:queue:{queue_name}"


def task_name_index(task_name: str) -> str:
    """Sorted set of the ids of tasks of ``task_name``."""
    return f"{LEDGER_PREFIX}idx:task:{task_name}"


def task_queue_index(task_name: str, queue_name: str) -> str:
    """Sorted set of the ids of tasks of ``task_name`` sent to ``queue_name``."""
    return f"{LEDGER_PREFIX}idx:task:{task_name}:queue:{queue_name}"


def status_index(status: str, *, queue_name: str | None = None, task_name: str | None = None) -> str:
    """Sorted set of the ids of tasks now in ``status`` (optionally of one queue or one task)."""
    if queue_name is not None:
        return f"{LEDGER_PREFIX}idx:status:{status}:queue:{queue_name}"
    if task_name is not None:
        return f"{LEDGER_PREFIX}idx:status:{status}:task:{task_name}"
    return f"{LEDGER_PREFIX}idx:status:{status}"


def unindexed() -> str:
    """List of the ids of records a send wrote whose index entries are still to be added."""
    return f"{LEDGER_PREFIX}unindexed"


def known_queues() -> str:
    """Set of every queue name the ledger has seen."""
    return f"{LEDGER_PREFIX}queues"


def known_task_names() -> str:
    """Set of every task name the ledger has seen."""
    return f"{LEDGER_PREFIX}tasks"


def idempotency_done(key: str) -> str:
    """Set once the task run for idempotency ``key`` succeeded; its value is that task's id."""
    return f"{LEDGER_PREFIX}done:{key}"


def task_events(task_id: str) -> str:
    """Pub/sub channel announcing a task's status and progress changes."""
    return f"{LEDGER_PREFIX}events:{task_id}"


def cancel_channel() -> str:
    """Pub/sub channel on which cancelled task ids are announced to workers."""
    return f"{LEDGER_PREFIX}cancel"


def cancelled_ids() -> str:
    """Sorted set of cancelled task ids (score: cancel time, ms): what makes cancel durable."""
    return f"{LEDGER_PREFIX}cancelled"


def stats_bucket(granularity: str, bucket: int, dimension: str = "") -> str:
    """Hash of counters for one minute (``m``) or hour (``h``) bucket.

    ``dimension`` is ``""`` for all tasks, ``q:<queue>`` or ``t:<task name>``.
    """
    suffix = f":{dimension}" if dimension else ""
    return f"{LEDGER_PREFIX}stats:{granularity}:{bucket}{suffix}"


def workers() -> str:
    """Hash of live workers: worker id -> JSON (host, pid, queues, started)."""
    return f"{LEDGER_PREFIX}workers"


def workers_seen() -> str:
    """Sorted set of worker ids by last heartbeat (ms)."""
    return f"{LEDGER_PREFIX}workers:seen"


def maintenance_lock() -> str:
    """Lock taken by the one worker that trims the indexes in a given minute."""
    return f"{LEDGER_PREFIX}maintenance"


def broker_queue(queue_name: str) -> str:
    """Dramatiq's list of message ids waiting in ``queue_name``."""
    return f"{BROKER_NAMESPACE}:{queue_name}"


def broker_messages(queue_name: str) -> str:
    """Dramatiq's hash of the messages of ``queue_name`` not yet acknowledged."""
    return f"{BROKER_NAMESPACE}:{queue_name}.msgs"


def broker_fetched(broker_id: str, queue_name: str) -> str:
    """Dramatiq's set of the message ids one broker instance fetched from ``queue_name``, not yet acked."""
    return f"{broker_fetched_prefix()}{broker_id}.{queue_name}"


def broker_fetched_prefix() -> str:
    """The prefix of every worker's fetched sets (:func:`broker_fetched` without its broker id and
    queue), for a script that walks the sets of the workers it finds dead."""
    return f"{BROKER_NAMESPACE}:__acks__."


def suspects(queue_name: str) -> str:
    """Hash of ``queue_name``'s messages held by a worker that died: delivery id -> deaths counted.

    See :mod:`aury_tasks.broker.redis.recovery`.
    """
    return f"{BROKER_NAMESPACE}:suspects:{queue_name}"


def running_suspects(queue_name: str) -> str:
    """Hash of the suspects of ``queue_name`` a worker started: delivery id -> that worker's broker id."""
    return f"{BROKER_NAMESPACE}:running-suspects:{queue_name}"


def delay_queue_name(queue_name: str) -> str:
    """Name of the delay queue Dramatiq keeps beside ``queue_name``."""
    return f"{queue_name}.DQ"


def dead_letters(queue_name: str) -> str:
    """Dramatiq's dead-letter sorted set of ``queue_name`` (score: time of death, ms)."""
    return f"{BROKER_NAMESPACE}:{queue_name}.XQ"


def dead_letter_messages(queue_name: str) -> str:
    """Dramatiq's hash of the dead-lettered messages of ``queue_name``."""
    return f"{BROKER_NAMESPACE}:{queue_name}.XQ.msgs"


#: Prefix of the scheduler's keys (job definitions, leader lease, fire claims), with its colon.
SCHEDULER_PREFIX = "aury:scheduler:"


def scheduler_jobs() -> str:
    """Hash of the scheduled jobs: job id -> its definition as JSON."""
    return f"{SCHEDULER_PREFIX}jobs"


def scheduler_runs() -> str:
    """Hash of each job's last fire: job id -> JSON (when, planned time, task id)."""
    return f"{SCHEDULER_PREFIX}runs"


def scheduler_changes() -> str:
    """Channel announcing a changed or removed job (message: ``put:<id>``, ``remove:<id>``, ``clear``)."""
    return f"{SCHEDULER_PREFIX}changes"


def scheduler_leader() -> str:
    """The leader lease: the id of the scheduler process that fires, expiring unless renewed."""
    return f"{SCHEDULER_PREFIX}leader"


def scheduler_fire(job_id: str, fire_time_ms: int) -> str:
    """Claim of one planned fire of one job (``SET NX``): whoever sets it enqueues the tick."""
    return f"{SCHEDULER_PREFIX}fire:{job_id}:{fire_time_ms}"


def scheduler_fire_counts() -> str:
    """Hash of how many ticks each job sent since it was first fired: job id -> count (only grows)."""
    return f"{SCHEDULER_PREFIX}fired"


def scheduler_miss_counts() -> str:
    """Hash of how many ticks each job missed (later than its ``misfire_grace_time``): job id -> count."""
    return f"{SCHEDULER_PREFIX}missed"


def time_limit_counts(minute: int) -> str:
    """Hash of the tasks that hit their time limit in one minute (UNIX minute): ``""`` (all),
    ``q:<queue>`` and ``t:<task name>`` -> count. Written only when it happens; read by the alerts."""
    return f"{LEDGER_PREFIX}timelimits:{minute}"


#: How long a minute of :func:`time_limit_counts` is kept, in seconds.
TIME_LIMIT_COUNTS_TTL = 2 * 86_400


# Workflows (aury_tasks.workflows)


def group_state(group_id: str) -> str:
    """Hash of one group of a workflow: member results by index, the done count, its continuation."""
    return f"{LEDGER_PREFIX}group:{group_id}"


# Flow control (aury_tasks.middleware.limits)

#: Prefix of the flow-control keys (rate windows, concurrency leases, uniqueness locks).
LIMITS_PREFIX = f"{BROKER_NAMESPACE}:limits:"


def rate_limit(task_name: str) -> str:
    """Key (Dramatiq's window rate limiter adds its own suffixes) of ``task_name``'s rate limit."""
    return f"{LIMITS_PREFIX}rate:{task_name}"


def concurrency_leases(task_name: str) -> str:
    """Sorted set of the runs of ``task_name`` holding a concurrency slot (score: lease expiry, ms)."""
    return f"{LIMITS_PREFIX}concurrency:{task_name}"


def unique_lock(task_name: str, digest: str) -> str:
    """Holds the id of the pending or running task of ``task_name`` whose unique key digests to ``digest``."""
    return f"{LIMITS_PREFIX}unique:{task_name}:{digest}"


def priority_queue(queue_name: str) -> str:
    """Sorted set of the ids of ``queue_name``'s messages sent with a priority above 0, waiting.

    Score orders them highest priority first, then oldest first; a fetch moves them to the front
    of the queue's list (see :mod:`aury_tasks.broker.redis.priority`).
    """
    return f"{BROKER_NAMESPACE}:{queue_name}.PQ"


def priority_sequence(queue_name: str) -> str:
    """Counter numbering ``queue_name``'s priority sends, so that equal priorities keep their order."""
    return f"{BROKER_NAMESPACE}:{queue_name}.PQ.seq"


def broker_heartbeats() -> str:
    """Dramatiq's sorted set of broker instances by last call (ms): a stale one is a dead worker."""
    return f"{BROKER_NAMESPACE}:__heartbeats__"


def doctor_probe() -> str:
    """The key ``aum doctor`` names when it asks Redis (``ACL DRYRUN``) whether a command is allowed
    on the broker's keys; never written."""
    return f"{BROKER_NAMESPACE}:doctor"


def workflow_owed() -> str:
    """Sorted set of fired groups whose continuation is not known to be started (score: fired at, ms).

    A worker that fires a group (the join rides on a member's ack) starts the continuation and
    removes the entry; an entry left behind by a worker that died is taken over by another.
    """
    return f"{LEDGER_PREFIX}owed"


def wake_channel(queue_name: str) -> str:
    """Channel told when a message arrives on ``queue_name`` while a consumer of it idles.

    See :mod:`aury_tasks.broker.redis.wakeup`; a delay queue (``<queue>.DQ``) has its own.
    """
    return f"{BROKER_NAMESPACE}:wake:{queue_name}"


def wake_pattern() -> str:
    """Pattern of every queue's :func:`wake_channel`: one subscription per worker process."""
    return f"{BROKER_NAMESPACE}:wake:*"


def wake_stop_channel(waker_id: str) -> str:
    """Channel one wake-up thread listens on to be told to stop (outside :func:`wake_pattern`)."""
    return f"{BROKER_NAMESPACE}:wake-stop:{waker_id}"


def idle_marker(queue_name: str) -> str:
    """Set by a fetch of ``queue_name`` that found nothing; the next send deletes it and wakes consumers."""
    return f"{BROKER_NAMESPACE}:idle:{queue_name}"


# Alerts (aury_tasks.alerts)

#: Prefix of the alerts' keys (rules, incidents), with its colon.
ALERTS_PREFIX = "aury:alerts:"


def alert_rules() -> str:
    """Hash of the alert rules added with ``aum alerts add``: rule name -> its JSON."""
    return f"{ALERTS_PREFIX}rules"


def alert_incidents() -> str:
    """Hash of each rule's incident (breached since, firing since): rule name -> JSON."""
    return f"{ALERTS_PREFIX}incidents"
