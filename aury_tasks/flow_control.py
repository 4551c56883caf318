"""Flow control declared on the decorator: ``rate_limit``, ``concurrency``, ``unique_for``.

This module parses and validates the options; the worker side lives in
:mod:`aury_tasks.middleware.flow_control`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import TaskOptionError

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
        """A short digest of what makes this send identical to another (its arguments, or its key)."""
        if self.key_function is not None:
            identity: Any = str(self.key_function(*args, **kwargs))
        elif self.names is not None and self.signature is not None:
            bound = self.signature.bind_partial(*args, **kwargs)
            bound.apply_defaults()
            identity = {name: bound.arguments.get(name) for name in self.names}
        else:
            identity = [list(args), dict(kwargs)]
        text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:32]
