"""Every Redis key prefix aury-tasks uses, and their lifetimes.

The only module that spells key strings: a change of layout happens here and nowhere else.
"""

from __future__ import annotations

#: Namespace of the broker's own keys (Dramatiq's queues, delay queues, heartbeats, acks).
#: Separate from Dramatiq's default ``dramatiq`` so both can share one Redis.
BROKER_NAMESPACE = "aury"

#: How long dead-lettered messages are kept (Dramatiq's ``dead_message_ttl``), in ms.
DEAD_MESSAGE_TTL_MS = 7 * 86_400_000

#: Prefix of the task ledger's keys: records, status indexes.
LEDGER_PREFIX = "aury:ledger"

#: How long a task record (and its result) is kept, in seconds (7 days).
DEFAULT_RESULT_TTL = 7 * 86_400


def task_record(task_id: str) -> str:
    """Hash holding one task's record."""
    return f"{LEDGER_PREFIX}:task:{task_id}"


def status_index_prefix() -> str:
    """Prefix of the sorted sets indexing task ids by status (score: time of the change, ms)."""
    return f"{LEDGER_PREFIX}:status:"


def status_index(status: str) -> str:
    """Sorted set of the ids of tasks now in ``status``."""
    return status_index_prefix() + status
