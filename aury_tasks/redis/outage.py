"""One warning per process when Redis goes away, one line when it is back: not a line per thread per second.

A worker process has several threads that talk to Redis on their own (acknowledgements, wake-ups,
the cancel watcher, the ledger's upkeep); a scheduler has its lease and its change feed. When
Redis goes away (a restart, a Sentinel failover), each of them retries until it answers again.
Each reports its failures here: the first thread to lose Redis logs a warning, the others' failures
and every retry go to the debug log, and once every thread that lost Redis has reached it again
one line says so, with how long it took.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from loguru import logger

from ..core.redaction import redact_text

T = TypeVar("T")

_lock = threading.Lock()
#: The parts (threads) that lost Redis and have not reached it since.
_lost: set[str] = set()
_since: list[float] = [0.0]


def redis_lost(part: str, error: BaseException) -> None:
    """``part`` (``"acknowledgements"``, ``"cancel watcher"`` ...) could not reach Redis and will retry."""
    with _lock:
        first = not _lost
        _lost.add(part)
        if first:
            _since[0] = time.monotonic()
    if first:
        logger.warning("lost Redis ({}), retrying until it answers: {}", part, redact_text(str(error)))
    else:
        logger.debug("{} still without Redis: {}", part, redact_text(str(error)))


def redis_back(part: str) -> None:
    """``part`` reached Redis (cheap when it had not lost it)."""
    if part not in _lost:
        return
    with _lock:
        _lost.discard(part)
        last = not _lost
    if last:
        logger.info("Redis answers again, after {:.1f} s", time.monotonic() - _since[0])


#: Seconds :func:`patiently` keeps trying before it lets the error through.
PATIENCE = 30.0
#: Seconds between two of its tries.
RETRY_PAUSE = 0.5


def patiently(part: str, call: Callable[[], T], patience: float = PATIENCE) -> T:
    """``call()``, tried again while Redis cannot be reached, for up to ``patience`` seconds.

    For a write a thread cannot do without (a task's idempotency mark): a failover or a restart
    delays it rather than failing it. Then the last ``redis.ConnectionError`` or
    ``redis.TimeoutError`` is raised.
    """
    deadline = time.monotonic() + patience
    while True:
        try:
            result = call()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() >= deadline:
                raise
            redis_lost(part, exc)
            time.sleep(RETRY_PAUSE)
            continue
        redis_back(part)
        return result
