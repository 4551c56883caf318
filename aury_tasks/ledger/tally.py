"""Statistics counts added up in a worker process and written to Redis once a second.

A final status write used to count its task into six statistics buckets inside its own script:
minute and hour, for all tasks, its queue and its task name, three fields each (status, summed
duration, duration histogram bucket). That was 18 ``HINCRBY`` a task, half the commands Redis ran
for it. A worker now hands those counts to its :class:`StatsTally` when the write's reply says it
was applied, and the tally sends their sums once a second: one ``HINCRBY`` per bucket field that
moved and one ``EXPIRE`` per bucket, however many tasks ended in that second.

What this changes for readers: a task's statistics appear up to one flush interval after its
record is final, and a worker killed with ``SIGKILL`` loses the counts of its last interval (its
tasks' records, indexes and results are not affected: they are written with the task).
Producers, the API and the CLI keep counting inside the script, at once.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable

import redis
from loguru import logger

from ..core.keys import MINUTE_BUCKET_TTL, KeySpace
from ..core.redaction import redact_text

#: Seconds between two flushes.
FLUSH_INTERVAL = 1.0


class StatsTally:
    """Counts of ended tasks per statistics bucket, flushed to Redis by a thread of its own.

    Parameters:
      client: the ledger's Redis client.
      keys: the ledger's keys (its prefix).
      hour_ttl: seconds an hour bucket lives (the ledger's record lifetime plus an hour, as the
        script gives it).
      interval: seconds between flushes.
    """

    def __init__(
        self, client: redis.Redis, keys: KeySpace, *, hour_ttl: int, interval: float = FLUSH_INTERVAL
    ) -> None:
        self.client = client
        self.keys = keys
        self.hour_ttl = hour_ttl
        self.interval = interval
        #: Per bucket key: its lifetime in seconds and the counts not yet sent.
        self._counts: dict[str, tuple[int, Counter[str]]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        """Start the flushing thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="aury-stats-tally", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread and flush what is left; counts added later are flushed as they come."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5.0)
        self.flush()

    def on_written(
        self, now_ms: int, queue_name: str, task_name: str, status: str, duration_us: str, bucket: str
    ) -> Callable[[object], None]:
        """The ``on_reply`` of a final write: it counts the task once the reply says it was applied."""

        def counted(reply: object) -> None:
            if reply == 1:
                self.count(now_ms, queue_name, task_name, status, duration_us, bucket)

        return counted

    def count(
        self, now_ms: int, queue_name: str, task_name: str, status: str, duration_us: str, bucket: str
    ) -> None:
        """Count one task that ended in ``status`` at ``now_ms`` (``duration_us`` ``''``: none)."""
        fields = [status]
        if duration_us:
            fields += ["dsum", f"d{bucket}"]
        minute, hour = math.floor(now_ms / 60_000), math.floor(now_ms / 3_600_000)
        buckets = (("m", minute, MINUTE_BUCKET_TTL), ("h", hour, self.hour_ttl))
        with self._lock:
            for dimension in ("", f"q:{queue_name}", f"t:{task_name}"):
                for granularity, number, ttl in buckets:
                    key = self.keys.stats_bucket(granularity, number, dimension)
                    counter = self._counts.setdefault(key, (ttl, Counter()))[1]
                    for field in fields:
                        counter[field] += int(duration_us) if field == "dsum" else 1
        if self._stopped.is_set():
            self.flush()

    def flush(self) -> bool:
        """Send the counts added up so far in one round trip; ``False`` when Redis could not take them
        (they are kept for the next flush)."""
        with self._lock:
            counts, self._counts = self._counts, {}
        if not counts:
            return True
        pipe = self.client.pipeline(transaction=False)
        for key, (ttl, counter) in counts.items():
            for field, amount in counter.items():
                pipe.hincrby(key, field, amount)
            pipe.expire(key, ttl)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            self._keep(counts)
            if not self._failing:
                logger.warning("could not write task statistics, keeping them for the next try: {}",
                               redact_text(str(exc)))  # fmt: skip
            self._failing = True
            return False
        if self._failing:
            logger.info("task statistics written again")
        self._failing = False
        return True

    def _keep(self, counts: dict[str, tuple[int, Counter[str]]]) -> None:
        """Put unsent ``counts`` back, under what was counted meanwhile."""
        with self._lock:
            for key, (ttl, counter) in counts.items():
                self._counts.setdefault(key, (ttl, Counter()))[1].update(counter)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.flush()
