"""The current value of each rule, read from the ledger, the broker and the scheduler's counters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import redis
from loguru import logger

from ..config.alert_rules import AlertRule
from ..core.errors import AuryTasksError
from ..core.keys import TIME_LIMIT_COUNTS_TTL
from ..core.redaction import redact_text
from ..core.status import TaskStatus

if TYPE_CHECKING:
    from ..ledger.records import QueueStats
    from ..scheduler.store import ScheduleStore
    from ..tasks.manager import TaskManager


class Readings:
    """Reads the values of rules, each queue's stats once per evaluation.

    Parameters:
      tm: the TaskManager whose ledger and broker are read.
      schedules: the scheduler's store (its miss counts, for ``misfires``).
    """

    def __init__(self, tm: TaskManager, schedules: ScheduleStore) -> None:
        self.tm = tm
        self.schedules = schedules
        self._queues: dict[str, QueueStats] = {}

    def read(self, rules: Iterable[AlertRule], now: float) -> dict[str, float | None]:
        """Each rule's value now; ``None`` for one that could not be read (logged)."""
        self._queues.clear()
        values: dict[str, float | None] = {}
        for rule in rules:
            try:
                values[rule.name] = self.value(rule, now)
            except (AuryTasksError, redis.RedisError) as exc:
                logger.warning("alert rule {} could not be read: {}", rule.name, redact_text(str(exc)))
                values[rule.name] = None
        return values

    def value(self, rule: AlertRule, now: float) -> float:
        """The value of ``rule`` now (see :data:`~aury_tasks.config.alert_rules.KINDS`)."""
        if rule.kind == "backlog":
            return float(self._queue(rule).pending)
        if rule.kind == "dead_letters":
            return float(self._queue(rule).dead)
        if rule.kind == "no_worker":
            return float(self._queue(rule).workers)
        if rule.kind == "backlog_age":
            return self._oldest_pending_age(str(rule.queue), now)
        if rule.kind == "failure_rate":
            stats = self.tm.statistics(now - rule.window, now, queue=rule.queue, task_name=rule.task)
            failed = stats.failed + stats.dead
            return round(100.0 * failed / stats.total, 2) if stats.total else 0.0
        if rule.kind == "misfires":
            counts: Any = self.schedules.client.hgetall(self.schedules.keys.scheduler_miss_counts())
            if rule.job is not None:
                return float(counts.get(rule.job, 0))
            return float(sum(int(count) for count in counts.values()))
        if rule.kind == "time_limit":
            return float(self._time_limits(rule, now))
        raise AuryTasksError(f"alert kind {rule.kind!r} cannot be read")

    def _time_limits(self, rule: AlertRule, now: float) -> int:
        """Tasks stopped by their time limit in the rule's window (whole minutes, the current one in)."""
        field = f"q:{rule.queue}" if rule.queue else (f"t:{rule.task}" if rule.task else "")
        last = int(now // 60)
        first = int((now - rule.window) // 60) + 1
        store = self.tm.store
        pipe = store.client.pipeline(transaction=False)
        for minute in range(max(first, last - TIME_LIMIT_COUNTS_TTL // 60), last + 1):
            pipe.hget(store.keys.time_limit_counts(minute), field)
        return sum(int(count or 0) for count in pipe.execute())

    def _queue(self, rule: AlertRule) -> QueueStats:
        name = str(rule.queue)
        if name not in self._queues:
            self._queues[name] = self.tm.queue_stats(name)
        return self._queues[name]

    def _oldest_pending_age(self, queue: str, now: float) -> float:
        store = self.tm.store
        store.catch_up()
        oldest = store.client.zrange(
            store.keys.status_index(TaskStatus.PENDING.value, queue_name=queue), 0, 0, withscores=True
        )
        if not oldest:
            return 0.0
        return max(0.0, round(now - float(oldest[0][1]) / 1000, 3))
