"""The Redis server's clock as one process reads it: its own wall clock plus a measured offset.

Workers on many hosts compare times they write to Redis: a heartbeat is the moment of a
worker's last call, and a worker is taken for dead when that moment is older than the
heartbeat timeout *by the clock of the worker that looks*; a delayed message's eta is written
by its sender and compared by the worker that holds it. With each host's own clock, a host 30 s
ahead writes heartbeats that look fresh for 30 s after it died, takes every other worker for
dead (their heartbeats look 30 s old) and gives their messages, still running, to the queue
again, and sends the delayed messages it holds to their queue up to 30 s early.

So every such time is read on one clock, the Redis server's: :class:`ServerClock` measures
the offset between the process's wall clock and the server's (``TIME``, corrected for half the
round trip) once, then again every :data:`REMEASURE_SECONDS`, and adds it to the local clock,
so reading it costs no round trip. While the server cannot be reached the last offset is kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

#: Seconds between two measurements of the offset (clocks drift slowly; NTP may step one).
REMEASURE_SECONDS = 30.0
#: Seconds before a first measurement that failed (the server could not be reached) is tried
#: again; once one succeeded, a failed one waits the whole :data:`REMEASURE_SECONDS`, so that an
#: outage does not add the client's retries to a call more than that often.
RETRY_SECONDS = 5.0


class _TimeSource(Protocol):
    def time(self) -> tuple[int, int]: ...


class ServerClock:
    """The time on the Redis server of ``client``, read without a round trip (see the module's text).

    Parameters:
      client: the Redis whose clock is read (``TIME``).
      every: seconds between two measurements of the offset.
      local: this process's wall clock, seconds (``time.time``).
    """

    def __init__(
        self, client: _TimeSource | redis.Redis, *, every: float = REMEASURE_SECONDS,
        local: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self._client = client
        self._every = every
        self._local = local
        self._offset = 0.0
        self._measured = False
        self._due = 0.0  # monotonic seconds
        self._lock = threading.Lock()

    @property
    def offset(self) -> float:
        """Seconds the server's clock is ahead of this process's (0 until a first measurement)."""
        if time.monotonic() >= self._due:
            self.measure()
        return self._offset

    def time(self) -> float:
        """The server's time now, seconds since the epoch."""
        offset = self.offset
        return self._local() + offset

    def millis(self) -> int:
        """The server's time now, ms since the epoch (what heartbeats, etas and recovery use)."""
        return int(self.time() * 1000)

    def local_millis(self, server_millis: float) -> int:
        """The moment of this process's own clock (ms) when the server's clock reads ``server_millis``."""
        return int(server_millis - self.offset * 1000)

    def measure(self) -> bool:
        """Measure the offset now (one ``TIME``); ``False`` when the server could not be asked.

        One thread measures at a time; the others keep the offset they have meanwhile. A failed
        measurement is tried again after :data:`RETRY_SECONDS` while none ever succeeded, else at
        the next due time.
        """
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._due = time.monotonic() + self._every
            try:
                before = self._local()
                seconds, micros = self._client.time()
                after = self._local()
            except (redis.RedisError, OSError):
                if not self._measured:
                    self._due = time.monotonic() + min(self._every, RETRY_SECONDS)
                return False
            self._offset = int(seconds) + int(micros) / 1e6 - (before + after) / 2
            self._measured = True
            return True
        finally:
            self._lock.release()

    @property
    def measured(self) -> bool:
        """Whether the offset was measured at least once."""
        return self._measured
