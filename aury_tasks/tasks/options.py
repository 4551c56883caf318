"""The options of ``@tm.conditional_task(...)``, declared once.

:class:`TaskOptionArgs` declares every keyword the decorator takes, with its type: the decorator's
signature is made from it, so a type checker and an IDE know each keyword, and a misspelt one is
an error. :meth:`TaskOptions.of` fills in the defaults (from settings), checks each option and
turns them into what a :class:`~aury_tasks.tasks.task.Task` is made of. What each option means is
the ``Parameters`` of :meth:`~aury_tasks.tasks.manager.TaskManager.conditional_task`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from ..broker.redis.priority import MAX_PRIORITY
from ..core.errors import PermanentError, TaskInterrupted, TaskOptionError
from ..middleware.limits import UniqueKey, Uniqueness, parse_rate_limit
from ..middleware.soft_timeout import OPTION as SOFT_TIME_LIMIT
from .stack import default_middleware

if TYPE_CHECKING:
    from ..config.snapshot import Settings

_QUEUE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")

#: A class of exceptions, or several.
ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


class OwnOptionArgs(TypedDict, total=False):
    """The options aury-tasks handles itself (``None``: the setting's default)."""

    queue_name: str | None
    max_retries: int | None
    timeout: float | None
    soft_timeout: float | None
    retry_delay: float | None
    max_retry_delay: float | None
    priority: int
    actor_name: str | None
    retry_on: ExceptionTypes | None
    rate_limit: str | None
    concurrency: int | None
    unique_for: float | None
    unique_key: UniqueKey | None


class ActorOptionArgs(TypedDict, total=False):
    """The Dramatiq actor options the middleware of our brokers accept, passed on as they are.

    A test holds this list to the middleware's ``actor_options`` (Dramatiq's minor version is pinned).
    """

    max_age: int
    time_limit: int
    notify_shutdown: bool
    on_failure: str
    on_success: str
    pipe_ignore: bool
    pipe_target: dict[str, Any]
    idempotent: bool
    ignore_result: bool
    min_backoff: int
    max_backoff: int
    retry_when: Callable[[int, BaseException], bool]
    throws: ExceptionTypes
    on_retry_exhausted: str
    soft_time_limit: int | None


class TaskOptionArgs(OwnOptionArgs, ActorOptionArgs, total=False):
    """Every keyword of ``@tm.conditional_task(...)``."""


#: The options :meth:`TaskOptions.of` handles itself; the others go to Dramatiq as they are.
OWN_OPTIONS: frozenset[str] = frozenset(OwnOptionArgs.__optional_keys__)

_actor_options: frozenset[str] | None = None


def dramatiq_actor_options(settings: Settings) -> frozenset[str]:
    """The actor options the middleware of our brokers accept (checked at decoration time)."""
    global _actor_options
    if _actor_options is None:  # the same for any settings: they only set the middleware's defaults
        middleware = default_middleware(settings)
        _actor_options = frozenset(option for mw in middleware for option in mw.actor_options)
    return _actor_options


@dataclass(frozen=True)
class TaskOptions:
    """The options of one task, checked, with the settings' defaults filled in."""

    #: The registered name (``actor_name``, else ``<module>.<function>``).
    name: str
    #: The queue it is sent to.
    queue_name: str
    #: 0 to 9; higher runs first.
    priority: int
    #: Its Dramatiq actor's options (``max_retries``, ``time_limit`` in ms, ``min_backoff`` …).
    actor_options: Mapping[str, Any]
    #: How identical sends are recognised (``unique_for``), or ``None``.
    uniqueness: Uniqueness | None

    @classmethod
    def of(cls, fn: Callable[..., Any], settings: Settings, options: Mapping[str, Any]) -> TaskOptions:
        """Check ``options``, the keywords of ``conditional_task``, for ``fn``.

        Raises:
          TaskOptionError: for an unknown option or a bad value, naming the task.
        """
        if not callable(fn):
            raise TaskOptionError(f"conditional_task decorates a function, not {fn!r}")
        passed_on = dict(options)
        own: dict[str, Any] = {key: passed_on.pop(key) for key in options if key in OWN_OPTIONS}
        name = own.get("actor_name") or f"{fn.__module__}.{fn.__qualname__}"
        unknown = set(passed_on) - dramatiq_actor_options(settings)
        if unknown:
            raise TaskOptionError(f"{name}: unknown task option(s) {', '.join(sorted(unknown))}")
        queue = own.get("queue_name") or settings.queue_name
        if not _QUEUE_NAME.fullmatch(queue):
            raise TaskOptionError(f"{name}: invalid queue name {queue!r} (letters, digits, '.', '_', '-')")
        actor_options = _retry_options(name, settings, own, passed_on)
        priority = _priority(name, own)
        actor_options.update(_flow_control_options(name, own))
        return cls(name, queue, priority, actor_options, _uniqueness(name, fn, own))


def _given(own: Mapping[str, Any], option: str, default: Any) -> Any:
    """The value of ``option``, or ``default`` when it is not given or ``None``."""
    value = own.get(option)
    return default if value is None else value


def _retry_options(
    name: str, settings: Settings, own: Mapping[str, Any], passed_on: dict[str, Any]
) -> dict[str, Any]:
    """The actor options of retries and time limits, then those passed on to Dramatiq as they are."""
    retries = _given(own, "max_retries", settings.max_retries)
    if retries < 0:
        raise TaskOptionError(f"{name}: max_retries must be 0 or more, got {retries}")
    limit = _given(own, "timeout", settings.timeout)
    first_delay = _given(own, "retry_delay", settings.retry_delay)
    delay_cap = _given(own, "max_retry_delay", settings.max_retry_delay)
    if limit <= 0 or first_delay <= 0 or delay_cap <= 0:
        raise TaskOptionError(f"{name}: timeout, retry_delay and max_retry_delay must be greater than 0")
    throws = passed_on.pop("throws", ())
    throws = throws if isinstance(throws, tuple) else (throws,)
    actor_options: dict[str, Any] = {
        "max_retries": retries,
        "time_limit": int(limit * 1000),
        "min_backoff": int(first_delay * 1000),
        "max_backoff": int(delay_cap * 1000),
        "throws": (PermanentError, TaskInterrupted, *throws),
        **passed_on,
    }
    if own.get("retry_on") is not None:
        actor_options["retry_when"] = _retry_only_on(own["retry_on"], retries)
    if own.get("soft_timeout") is not None:
        actor_options[SOFT_TIME_LIMIT] = _soft_time_limit_ms(
            name, own["soft_timeout"], limit, own.get("timeout") is None
        )
    return actor_options


def _soft_time_limit_ms(name: str, soft_timeout: Any, timeout: float, default_timeout: bool) -> int:
    """The ``soft_time_limit`` actor option (ms) for ``soft_timeout`` seconds, checked against ``timeout``."""
    if not isinstance(soft_timeout, (int, float)) or isinstance(soft_timeout, bool) or soft_timeout <= 0:
        raise TaskOptionError(f"{name}: soft_timeout is a number of seconds above 0, got {soft_timeout!r}")
    if soft_timeout >= timeout:
        where = " (TASK_TIMEOUT)" if default_timeout else ""
        raise TaskOptionError(
            f"{name}: soft_timeout={soft_timeout:g} must be below timeout={timeout:g}{where}: the soft"
            " limit comes first, so that the task can clean up before the time limit stops it"
        )
    return int(soft_timeout * 1000)


def _retry_only_on(retry_on: ExceptionTypes, max_retries: int) -> Callable[[int, BaseException], bool]:
    types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    for exc_type in types:
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise TaskOptionError(f"retry_on takes exception types, not {exc_type!r}")

    def retry_when(retries: int, exception: BaseException) -> bool:
        return retries < max_retries and isinstance(exception, types)

    return retry_when


def _priority(name: str, own: Mapping[str, Any]) -> int:
    priority = own.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= MAX_PRIORITY:
        raise TaskOptionError(f"{name}: priority is an integer from 0 to {MAX_PRIORITY}, got {priority!r}")
    return priority


def _flow_control_options(name: str, own: Mapping[str, Any]) -> dict[str, Any]:
    """The actor options of ``rate_limit`` and ``concurrency``."""
    actor_options: dict[str, Any] = {}
    rate_limit = own.get("rate_limit")
    if rate_limit is not None:
        actor_options["rate_limit"] = parse_rate_limit(name, rate_limit)
    concurrency = own.get("concurrency")
    if concurrency is not None:
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise TaskOptionError(f"{name}: concurrency is an integer of 1 or more, got {concurrency!r}")
        actor_options["concurrency"] = concurrency
    return actor_options


def _uniqueness(name: str, fn: Callable[..., Any], own: Mapping[str, Any]) -> Uniqueness | None:
    """What ``unique_for`` and ``unique_key`` declare, checked."""
    unique_for, unique_key = own.get("unique_for"), own.get("unique_key")
    if unique_key is not None and unique_for is None:
        raise TaskOptionError(f"{name}: unique_key needs unique_for (how long the lock may last)")
    if unique_for is None:
        return None
    if not isinstance(unique_for, (int, float)) or isinstance(unique_for, bool) or unique_for <= 0:
        raise TaskOptionError(f"{name}: unique_for is a number of seconds above 0, got {unique_for!r}")
    return Uniqueness.declare(name, fn, float(unique_for), unique_key)
