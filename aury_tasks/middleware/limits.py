"""Flow control declared on the decorator: ``rate_limit``, ``concurrency``, ``unique_for``.

This module parses and validates the options and holds their state in Redis, each check one
atomic step:

* ``rate_limit``: Dramatiq's window rate limiter (:class:`WindowLimiter`), at most 60 buckets;
* ``concurrency``: a sorted set of leases per task (:class:`ConcurrencyLeases`), each expiring
  unless its worker renews it, so the slot of a killed worker frees itself;
* ``unique_for``: a lock per task and unique key holding the id of the task sent under it
  (:func:`claim_unique`), free again once that task's ledger record is final.

The worker side (deferring a run over its limit) is :mod:`aury_tasks.middleware.flow_control`;
the send side of ``unique_for`` is :meth:`aury_tasks.tasks.task.Task.send_with_options`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from dramatiq.rate_limits.backends import RedisBackend

from ..broker.redis.dramatiq_internals import WindowRateLimiterBase
from ..core.errors import TaskOptionError
from ..core.keys import KeySpace
from ..redis.scripts import load_script

_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

#: What makes two sends of a ``unique_for`` task the same: argument names, or a function of the arguments.
UniqueKey = Sequence[str] | Callable[..., str]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most :attr:`limit` runs in any :attr:`window` seconds, across all workers."""

    limit: int
    window: int

    def __str__(self) -> str:
        return f"{self.limit}/{self.window}s"

    @property
    def per_second(self) -> float:
        """The rate as runs per second."""
        return self.limit / self.window


def parse_rate_limit(task_name: str, text: str) -> RateLimit:
    """Read ``"10/m"``, ``"5/s"``, ``"100/h"``, ``"1000/d"`` or ``"3/10s"`` (3 per 10 seconds).

    Raises:
      TaskOptionError: naming the task and the text when it is not a rate.
    """
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise TaskOptionError(
            f"{task_name}: rate_limit must look like '10/m' (runs per s, m, h or d), got {text!r}"
        )
    limit = int(match.group(1))
    window = int(match.group(2) or 1) * _UNIT_SECONDS[match.group(3)[0].lower()]
    if limit < 1 or window < 1:
        raise TaskOptionError(f"{task_name}: rate_limit must allow at least 1 run per window, got {text!r}")
    return RateLimit(limit, window)


@dataclass(frozen=True)
class Uniqueness:
    """How a ``unique_for`` task recognises a send identical to one still pending or running."""

    task_name: str
    #: How long the lock lasts at most, in seconds.
    seconds: float
    signature: inspect.Signature | None
    #: The arguments that count (``None``: all of them).
    names: tuple[str, ...] | None = None
    key_function: Callable[..., str] | None = None

    @classmethod
    def declare(
        cls, task_name: str, fn: Callable[..., Any], seconds: float, unique_key: UniqueKey | None
    ) -> Uniqueness:
        """Check ``unique_key`` against ``fn``'s parameters.

        Raises:
          TaskOptionError: for a name that is not a parameter of ``fn``, or a key of another type.
        """
        try:
            signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            signature = None
        if unique_key is None:
            return cls(task_name, seconds, signature)
        if callable(unique_key):
            return cls(task_name, seconds, signature, key_function=unique_key)
        if isinstance(unique_key, str) or not all(isinstance(name, str) for name in unique_key):
            raise TaskOptionError(
                f"{task_name}: unique_key is a list of argument names or a function, got {unique_key!r}"
            )
        names = tuple(unique_key)
        if signature is not None:
            unknown = [name for name in names if name not in signature.parameters]
            if unknown:
                raise TaskOptionError(f"{task_name}: unique_key names no parameter {', '.join(unknown)}")
        return cls(task_name, seconds, signature, names=names)

    def digest(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        """A short digest of what makes this send identical to another (its arguments, or its key).

        Arguments are matched to the function's parameters first, so ``send(1, y=2)``,
        ``send(x=1, y=2)`` and ``send(1, 2)`` are the same send, and so is ``send(1)`` when
        ``y`` defaults to 2.
        """
        if self.key_function is not None:
            identity: Any = str(self.key_function(*args, **kwargs))
        else:
            arguments = self._arguments(args, kwargs)
            if arguments is None:  # they do not fit the function: the send fails in the worker
                identity = [list(args), dict(kwargs)]
            elif self.names is not None:
                identity = {name: arguments.get(name) for name in self.names}
            else:
                identity = arguments
        try:
            text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=repr)
        except TypeError:  # keys that do not sort, such as 1 and "a"
            text = repr(identity)
        except RecursionError:  # nested too deeply for JSON: the send fails, and frees the key
            text = ""
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
        if self.signature is None:
            return None
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
        except TypeError:
            return None
        bound.apply_defaults()
        return dict(bound.arguments)


# Rate limits

#: A rate limit's window is counted in at most this many buckets (a second each up to 60 s).
MAX_BUCKETS = 60


class WindowLimiter(WindowRateLimiterBase):
    """Dramatiq's window rate limiter on Redis, with two changes.

    * A window longer than :data:`MAX_BUCKETS` seconds is counted in that many buckets of
      ``ceil(window / 60)`` seconds (Dramatiq keeps one per second: a ``/d`` limit would watch
      and read 86,400 keys per run).
    * The bucket incremented and the buckets summed are read at one instant. Dramatiq computes
      the first once and the others on each optimistic retry, so a retry that crosses a second
      counts a run in a bucket the sum no longer includes, and one more run gets in.

    A window of at most 60 s behaves as Dramatiq's: at most ``limit`` runs in the current whole
    second and the ``window - 1`` before it.

    Parameters:
      client: the Redis it counts in.
      key: prefix of its bucket keys (see :meth:`~aury_tasks.core.keys.KeySpace.rate_limit`).
      rate: the limit.
    """

    def __init__(self, client: redis.Redis, key: str, rate: RateLimit) -> None:
        super().__init__(RedisBackend(client=client), key, limit=rate.limit, window=rate.window)
        #: Seconds per bucket.
        self.bucket_seconds = -(-rate.window // MAX_BUCKETS)
        self.buckets = -(-rate.window // self.bucket_seconds)
        self.window_millis = self.bucket_seconds * self.buckets * 1000

    def bucket_keys(self, now: float | None = None) -> list[str]:
        """The keys of the window's buckets at ``now`` (default: this moment), the current one first."""
        moment = int(time.time() if now is None else now)
        first = moment // self.bucket_seconds * self.bucket_seconds
        return [f"{self.key}@{first - i * self.bucket_seconds}" for i in range(self.buckets)]

    def try_acquire(self, now: float | None = None) -> bool:
        """Count one run at ``now`` (default: this moment) if the window has room; return whether it had."""
        buckets = self.bucket_keys(now)
        return bool(
            self.backend.incr_and_sum(
                buckets[0], lambda: buckets, 1, maximum=self.limit, ttl=self.window_millis
            )
        )

    def seconds_to_next_bucket(self, now: float | None = None) -> float:
        """Seconds until the current bucket closes: the earliest moment a full window can take a run."""
        now = time.time() if now is None else now
        return self.bucket_seconds - now % self.bucket_seconds


# Concurrency

#: Take a slot: expired leases dropped, then one leased to the run if fewer than the limit are held
#: (``aury_tasks/redis/lua/acquire_lease.lua``).
_ACQUIRE_LEASE = load_script("acquire_lease")
#: Extend the leases a worker holds, except those already gone (``aury_tasks/redis/lua/renew_leases.lua``).
_RENEW_LEASES = load_script("renew_leases")


class ConcurrencyLeases:
    """At most ``limit`` runs of a task at once, across all workers: one lease per run.

    The leases are a sorted set (:meth:`~aury_tasks.core.keys.KeySpace.concurrency_leases`): member the run,
    score the moment its lease ends (ms, on the Redis server's clock: the hosts' clocks may
    disagree). A worker renews the leases of its runs every few seconds (:meth:`renew`); a killed
    worker's lease ends ``lease_seconds`` after its last renewal, and the next run to ask takes
    the slot.

    Parameters:
      client: the Redis holding the leases.
      lease_seconds: how long a lease lasts unless renewed.
    """

    def __init__(self, client: redis.Redis, keys: KeySpace, *, lease_seconds: float) -> None:
        self.client = client
        self.keys = keys
        self.lease_ms = int(lease_seconds * 1000)

    def acquire(self, task_name: str, run: str, limit: int) -> bool:
        """Lease ``run`` a slot of ``task_name`` if fewer than ``limit`` are held; return whether it was."""
        leases = [self.keys.concurrency_leases(task_name)]
        return bool(_ACQUIRE_LEASE(self.client, leases, [run, limit, self.lease_ms]))

    def release(self, task_name: str, run: str) -> None:
        """Give back the slot of ``run``."""
        self.client.zrem(self.keys.concurrency_leases(task_name), run)

    def renew(self, runs: Iterable[tuple[str, str]]) -> list[str]:
        """Extend the leases of ``(task name, run)`` pairs by ``lease_seconds`` from now.

        Returns:
          The runs whose lease had ended already (their slot may be another run's now).
        """
        pairs = list(runs)
        if not pairs:
            return []
        lost = _RENEW_LEASES(
            self.client,
            [self.keys.concurrency_leases(task_name) for task_name, _ in pairs],
            [self.lease_ms, *(run for _, run in pairs)],
        )
        return [item.decode() if isinstance(item, bytes) else str(item) for item in lost]


# Uniqueness

#: Claim the unique key of a send unless a task not yet final holds it
#: (``aury_tasks/redis/lua/claim_unique.lua``).
_CLAIM_UNIQUE = load_script("claim_unique")
#: Free the lock of a send that failed, if it still holds that send's task id
#: (``aury_tasks/redis/lua/release_unique.lua``).
_RELEASE_UNIQUE = load_script("release_unique")


def claim_unique(
    client: redis.Redis, keys: KeySpace, task_name: str, digest: str, task_id: str, seconds: float
) -> str | None:
    """Hold the unique key ``digest`` of ``task_name`` for ``task_id``, for at most ``seconds``.

    One atomic step on the ledger's Redis (``client``).

    Returns:
      ``None`` when the key is now held for ``task_id`` (send it); otherwise the id of the task
      holding it, pending or running (do not send: that task is the same work).
    """
    holder = _CLAIM_UNIQUE(
        client,
        [keys.unique_lock(task_name, digest)],
        [task_id, max(1, int(seconds * 1000)), keys.task_record("")],
    )
    if holder is None:
        return None
    return holder.decode() if isinstance(holder, bytes) else str(holder)


def release_unique(client: redis.Redis, keys: KeySpace, task_name: str, digest: str, task_id: str) -> bool:
    """Free the unique key ``digest`` of ``task_name`` if it is still held for ``task_id``.

    For a send that failed: never raises, so the send's own error is the one the caller sees.

    Returns:
      ``False`` when Redis could not be reached: the key is then held until it expires.
    """
    try:
        _RELEASE_UNIQUE(client, [keys.unique_lock(task_name, digest)], [task_id])
    except redis.RedisError:
        return False
    return True
