"""The ledger in Redis: a hash per task, a sorted set per status, TTL on every record."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from .. import keys
from ..status import TaskStatus
from .base import TaskRecord

#: Fields whose values are JSON in the hash.
_JSON_FIELDS = ("result", "metadata")
_FLOAT_FIELDS = ("enqueued_at", "started_at", "finished_at")

# One atomic step: read the record's position, compare, write and re-index, or do nothing.
# KEYS[1] record hash
# ARGV: id, status, attempt, phase, final (1/0), ttl ms, now ms, status index prefix, field, value…
_TRANSITION = """
local current = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'phase', 'final')
if current[4] == '1' then return 0 end
if current[1] and ARGV[5] ~= '1' then
    local attempt, phase = tonumber(ARGV[3]), tonumber(ARGV[4])
    local current_attempt, current_phase = tonumber(current[2]), tonumber(current[3])
    if attempt < current_attempt or (attempt == current_attempt and phase <= current_phase) then
        return 0
    end
end
if current[1] then redis.call('ZREM', ARGV[8] .. current[1], ARGV[1]) end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'attempt', ARGV[3], 'phase', ARGV[4], 'final', ARGV[5])
if #ARGV > 8 then redis.call('HSET', KEYS[1], unpack(ARGV, 9)) end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', ARGV[8] .. ARGV[2], ARGV[7], ARGV[1])
return 1
"""


class RedisTaskStore:
    """Task records in Redis, each status change one atomic, conditional script call.

    Parameters:
      client: a redis-py client (``decode_responses`` either way).
      ttl: seconds a record is kept after its last change (default 7 days).
    """

    def __init__(self, client: redis.Redis, *, ttl: float = keys.DEFAULT_RESULT_TTL) -> None:
        self.client = client
        self.ttl_ms = int(ttl * 1000)
        self._transition = client.register_script(_TRANSITION)

    def transition(self, task_id: str, status: TaskStatus, *, attempt: int = 1, **fields: Any) -> bool:
        """Move ``task_id`` to ``status`` for ``attempt`` if that is forward; set ``fields`` with it.

        Returns:
          bool: whether the write was applied (``False``: the record is already further on).
        """
        pairs: list[Any] = []
        for name, value in fields.items():
            pairs += [name, json.dumps(value) if name in _JSON_FIELDS else value]
        applied = self._transition(
            keys=[keys.task_record(task_id)],
            args=[
                task_id,
                status.value,
                attempt,
                status.phase,
                int(status.is_final),
                self.ttl_ms,
                int(time.time() * 1000),
                keys.status_index_prefix(),
                *pairs,
            ],
        )
        return bool(applied)

    def get(self, task_id: str) -> TaskRecord | None:
        """The record of ``task_id``, or ``None``."""
        raw = self.client.hgetall(keys.task_record(task_id))
        if not raw:
            return None
        data = {_text(k): _text(v) for k, v in raw.items()}
        record = TaskRecord(id=task_id, status=TaskStatus(data["status"]), attempt=int(data["attempt"]))
        for name in ("task_name", "queue_name", "worker", "error_type", "error_message", "traceback"):
            if name in data:
                setattr(record, name, data[name])
        for name in _FLOAT_FIELDS:
            if name in data:
                setattr(record, name, float(data[name]))
        for name in _JSON_FIELDS:
            if name in data:
                setattr(record, name, json.loads(data[name]))
        return record


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
