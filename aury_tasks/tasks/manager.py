"""TaskManager: the task registry, the broker it sends through, and ``conditional_task``."""

from __future__ import annotations

import difflib
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

import dramatiq

from ..broker.build import BrokerInfo
from ..broker.redis.priority import MAX_PRIORITY
from ..core.errors import PermanentError, TaskInterrupted, TaskNotFound, TaskOptionError
from ..core.instances import task_managers
from ..core.run_mode import RunMode
from ..middleware.limits import UniqueKey, Uniqueness, parse_rate_limit
from ..middleware.soft_timeout import OPTION as SOFT_TIME_LIMIT
from ..middleware.soft_timeout import soft_limitable
from ..workflows.canvas import Canvas
from ..workflows.engine import send_workflow
from ..workflows.handle import WorkflowHandle
from .stack import build_broker, default_middleware
from .task import P, R, Task, enqueue_many
from .tracking import TaskTracking

if TYPE_CHECKING:
    from ..config.snapshot import Settings

_QUEUE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9._-]*")
#: Options ``conditional_task`` handles itself; everything else goes to Dramatiq as is.
_OWN_OPTIONS = {"queue_name", "max_retries", "timeout", "soft_timeout", "retry_delay", "max_retry_delay",
                "priority", "actor_name", "retry_on", "rate_limit", "concurrency", "unique_for",
                "unique_key"}  # fmt: skip

F = TypeVar("F", bound=Callable[..., Any])


_actor_options: frozenset[str] | None = None


def _dramatiq_actor_options(settings: Settings) -> frozenset[str]:
    """The actor options the middleware of our brokers accept (checked at decoration time)."""
    global _actor_options
    if _actor_options is None:  # the same for any settings: they only set the middleware's defaults
        middleware = default_middleware(settings)
        _actor_options = frozenset(option for mw in middleware for option in mw.actor_options)
    return _actor_options


class TaskManager(TaskTracking):
    """Registry of tasks plus the broker they are sent through.

    Get one with :meth:`get_instance`; the default instance builds its broker from settings on
    first use, so a producer needs no setup call.

    >>> tm = TaskManager.get_instance()
    >>> @tm.conditional_task(queue_name="emails", max_retries=3, timeout=600, retry_delay=30)
    ... async def send_welcome_email(user_id: str) -> dict: ...
    >>> handle = send_welcome_email.send(user_id="42")
    """

    def __init__(self, name: str = "default", *, settings: Settings | None = None) -> None:
        self.name = name
        self._settings = settings
        self._run_mode: RunMode | None = None
        self._broker_url: str | None = None
        self._broker: dramatiq.Broker | None = None
        self._broker_info: BrokerInfo | None = None
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._declared_queues: set[str] = set()
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<TaskManager {self.name!r} mode={self.run_mode.value} tasks={len(self._tasks)}>"

    # Instances

    @classmethod
    def get_instance(cls, name: str = "default") -> TaskManager:
        """Return the manager called ``name``, the same object on every call.

        Named instances let one process talk to separate brokers.
        """
        instance: TaskManager = task_managers.get(name, cls)
        return instance

    @classmethod
    def reset_instance(cls, name: str | None = None) -> None:
        """Forget the instance called ``name`` (all of them when ``None``), closing its broker.

        Meant for tests: the next :meth:`get_instance` builds a fresh manager.
        """
        task_managers.reset(name)

    # Configuration

    @property
    def settings(self) -> Settings:
        """The settings this manager uses (the process-wide ones unless given).

        In a worker process started by ``aum worker``, a
        :class:`~aury_tasks.config.snapshot.SettingsSnapshot` of those ``aum worker`` checked.
        """
        if self._settings is None:
            from ..config.settings import get_settings  # only here: a worker process never loads pydantic

            return get_settings()
        return self._settings

    @property
    def run_mode(self) -> RunMode:
        """``worker``, ``producer`` or ``eager``: set by :meth:`initialize`, else ``TASK_RUN_MODE``."""
        return self._run_mode or self.settings.run_mode

    @property
    def is_initialized(self) -> bool:
        """Whether the broker has been built."""
        return self._broker is not None

    def configure(
        self,
        *,
        broker_url: str | None = None,
        run_mode: RunMode | str | None = None,
        settings: Settings | None = None,
    ) -> None:
        """Set the broker URL, run mode or settings without building the broker yet.

        Settings given here also supply the defaults of tasks declared afterwards.

        Raises:
          RuntimeError: when the broker is already built with another URL or settings.
        """
        with self._lock:
            if self._broker is not None and (
                (broker_url is not None and broker_url != self._broker_url)
                or (settings is not None and settings is not self._settings)
            ):
                raise RuntimeError(f"TaskManager {self.name!r} is already initialized; close() it first")
            if settings is not None:
                self._settings = settings
            if run_mode is not None:
                self._run_mode = RunMode(run_mode)
            if broker_url is not None:
                self._broker_url = broker_url

    def initialize(
        self,
        *,
        broker_url: str | None = None,
        run_mode: RunMode | str | None = None,
        settings: Settings | None = None,
    ) -> dramatiq.Broker:
        """Build the broker now, optionally overriding the URL, run mode and settings.

        Not needed in a producer: the first ``send`` initializes from settings. In worker mode
        every task declared so far (and every later one) becomes a Dramatiq actor.

        Returns:
          dramatiq.Broker: the broker tasks are sent through.
        """
        with self._lock:
            self.configure(broker_url=broker_url, run_mode=run_mode, settings=settings)
            if self._broker is None:
                self._broker, self._broker_info = build_broker(self.settings, self._broker_url, self)
            if self.run_mode is RunMode.WORKER:
                for task in self._tasks.values():
                    self._declare_actor(task)
            return self._broker

    @property
    def broker(self) -> dramatiq.Broker:
        """The Dramatiq broker, built from settings on first use."""
        if self._broker is None:
            return self.initialize()
        return self._broker

    def broker_for_queue(self, queue_name: str) -> dramatiq.Broker:
        """The broker, with ``queue_name`` declared on it (once per process, off the hot path)."""
        broker = self.broker
        if queue_name not in self._declared_queues:
            with self._lock:
                broker.declare_queue(queue_name)
                self._declared_queues.add(queue_name)
        return broker

    @property
    def broker_info(self) -> BrokerInfo:
        """What the broker is (kind and masked URL)."""
        self.broker  # noqa: B018 - builds it on first use
        assert self._broker_info is not None
        return self._broker_info

    def send_messages(self, messages: Sequence[dramatiq.Message[Any]]) -> None:
        """Send ready-made Dramatiq messages (a workflow's steps) in batched round trips.

        Held to the rules of every send (strict JSON, size cap); the errors are those of ``.send()``.
        """
        enqueue_many(self, [(message, None) for message in messages])

    def send_workflow(self, canvas: Canvas) -> WorkflowHandle:
        """Start ``canvas`` (a chain, group or chord of this manager's tasks): what ``canvas.send()`` does."""
        return send_workflow(canvas)

    def close(self) -> None:
        """Close the broker's connections; the manager can be initialized again."""
        with self._lock:
            broker, self._broker, self._broker_info = self._broker, None, None
            self._declared_queues.clear()
            for task in self._tasks.values():
                task.actor = None
        if broker is not None:
            broker.close()

    # Tasks

    @overload
    def conditional_task(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...

    @overload
    def conditional_task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def conditional_task(
        self,
        fn: None = None,
        /,
        *,
        queue_name: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        soft_timeout: float | None = None,
        retry_delay: float | None = None,
        max_retry_delay: float | None = None,
        priority: int = 0,
        actor_name: str | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
        rate_limit: str | None = None,
        concurrency: int | None = None,
        unique_for: float | None = None,
        unique_key: UniqueKey | None = None,
        **options: Any,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def conditional_task(self, fn: Callable[..., Any] | None = None, /, **kwargs: Any) -> Any:
        """Declare a task; works with and without parentheses, on ``def`` and ``async def``.

        What the function becomes depends on the run mode: a Dramatiq actor in a worker, a
        light proxy that only sends messages in a producer, an inline call in eager mode. The
        function stays directly callable in all three.

        Parameters:
          queue_name: queue to send to (default ``TASK_QUEUE_NAME``).
          max_retries: retries after a failure (default ``TASK_MAX_RETRIES``).
          timeout: time limit in seconds, for sync and async tasks (default ``TASK_TIMEOUT``).
          soft_timeout: seconds, below ``timeout``: then the task gets
            :class:`~aury_tasks.core.errors.SoftTimeLimitExceeded`, which it may catch to clean up
            before ``timeout`` stops it (async: at its next ``await``). Not enforced in eager
            mode. ``send_with_options(soft_time_limit=ms)`` overrides it (``None``: none).
          retry_delay: first retry delay in seconds; then doubling with jitter, about 30, 60,
            120 … for 30 (default ``TASK_RETRY_DELAY``).
          max_retry_delay: cap on the retry delay in seconds (default ``TASK_MAX_RETRY_DELAY``).
          priority: 0 (default) to 9; higher runs first. On Redis a message of priority 1 or more
            is fetched before every waiting message of lower priority (FIFO within a priority); on
            RabbitMQ it is the message priority. ``send_with_options(priority=…)`` overrides it.
          actor_name: the registered name (default ``<module>.<function>``).
          retry_on: exception types that are retried; any other fails at once.
          rate_limit: at most this many runs per time across all workers, e.g. ``"10/m"``,
            ``"5/s"``, ``"100/h"``, ``"3/10s"``; a run over the limit is deferred, not failed.
          concurrency: at most this many runs at once across all workers (``1``: a mutex); a run
            over the limit is deferred.
          unique_for: seconds; sending a task identical to one still pending or running returns
            that task's handle instead of enqueueing a duplicate (the lock lasts at most this long).
          unique_key: what makes two sends identical (default: task name and all arguments): the
            names of the arguments that count, or a function of the arguments returning a string.
          **options: further Dramatiq actor options (``max_age``, ``throws``, ``on_failure`` …).

        Raises:
          TaskOptionError: for an unknown option, a bad queue name or a name taken twice, or a
            ``soft_timeout`` that is not below ``timeout``.

        >>> @tm.conditional_task
        ... def add(x: int, y: int) -> int:
        ...     return x + y
        >>> @tm.conditional_task(queue_name="emails", max_retries=3, retry_on=(ConnectionError,))
        ... async def send_welcome_email(user_id: str) -> None: ...
        """
        if fn is not None:
            return self._declare(fn, **kwargs)

        def decorator(function: F) -> Any:
            return self._declare(function, **kwargs)

        return decorator

    def _declare(
        self,
        fn: Callable[..., Any],
        *,
        queue_name: str | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        soft_timeout: float | None = None,
        retry_delay: float | None = None,
        max_retry_delay: float | None = None,
        priority: int = 0,
        actor_name: str | None = None,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] | None = None,
        rate_limit: str | None = None,
        concurrency: int | None = None,
        unique_for: float | None = None,
        unique_key: UniqueKey | None = None,
        **options: Any,
    ) -> Task[Any, Any]:
        if not callable(fn):
            raise TaskOptionError(f"conditional_task decorates a function, not {fn!r}")
        name = actor_name or f"{fn.__module__}.{fn.__qualname__}"
        settings = self.settings
        unknown = set(options) - _dramatiq_actor_options(settings) - _OWN_OPTIONS
        if unknown:
            raise TaskOptionError(f"{name}: unknown task option(s) {', '.join(sorted(unknown))}")
        queue = queue_name or settings.queue_name
        if not _QUEUE_NAME.fullmatch(queue):
            raise TaskOptionError(f"{name}: invalid queue name {queue!r} (letters, digits, '.', '_', '-')")
        retries = settings.max_retries if max_retries is None else max_retries
        if retries < 0:
            raise TaskOptionError(f"{name}: max_retries must be 0 or more, got {retries}")
        limit = settings.timeout if timeout is None else timeout
        first_delay = settings.retry_delay if retry_delay is None else retry_delay
        delay_cap = settings.max_retry_delay if max_retry_delay is None else max_retry_delay
        if limit <= 0 or first_delay <= 0 or delay_cap <= 0:
            raise TaskOptionError(f"{name}: timeout, retry_delay and max_retry_delay must be greater than 0")

        throws = options.pop("throws", ())
        throws = throws if isinstance(throws, tuple) else (throws,)
        actor_options: dict[str, Any] = {
            "max_retries": retries,
            "time_limit": int(limit * 1000),
            "min_backoff": int(first_delay * 1000),
            "max_backoff": int(delay_cap * 1000),
            "throws": (PermanentError, TaskInterrupted, *throws),
            **options,
        }
        if retry_on is not None:
            actor_options["retry_when"] = _retry_only_on(retry_on, retries)
        if soft_timeout is not None:
            actor_options[SOFT_TIME_LIMIT] = _soft_time_limit_ms(name, soft_timeout, limit, timeout is None)
        if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= MAX_PRIORITY:
            raise TaskOptionError(
                f"{name}: priority is an integer from 0 to {MAX_PRIORITY}, got {priority!r}"
            )
        if rate_limit is not None:
            actor_options["rate_limit"] = parse_rate_limit(name, rate_limit)
        if concurrency is not None:
            if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
                raise TaskOptionError(f"{name}: concurrency is an integer of 1 or more, got {concurrency!r}")
            actor_options["concurrency"] = concurrency
        if unique_key is not None and unique_for is None:
            raise TaskOptionError(f"{name}: unique_key needs unique_for (how long the lock may last)")
        if unique_for is not None and (
            not isinstance(unique_for, (int, float)) or isinstance(unique_for, bool) or unique_for <= 0
        ):
            raise TaskOptionError(f"{name}: unique_for is a number of seconds above 0, got {unique_for!r}")

        task: Task[Any, Any] = Task(
            self, fn, name=name, queue_name=queue, priority=priority, options=actor_options
        )
        if unique_for is not None:
            task.uniqueness = Uniqueness.declare(name, fn, float(unique_for), unique_key)
        with self._lock:
            existing = self._tasks.get(name)
            if existing is not None and existing.fn is not fn and _origin(existing.fn) != _origin(fn):
                raise TaskOptionError(f"task name {name!r} is already taken by {_origin(existing.fn)}")
            self._tasks[name] = task
            if self._broker is not None and self.run_mode is RunMode.WORKER:
                self._declare_actor(task)
        return task

    def _declare_actor(self, task: Task[Any, Any]) -> None:
        broker = self.broker
        if task.actor is not None and task.actor.broker is broker:
            return
        declare = dramatiq.actor(
            broker=broker,
            actor_name=task.name,
            queue_name=task.queue_name,
            priority=-task.priority,  # Dramatiq runs lower numbers first among fetched messages
            **task.options,
        )
        # An async task's coroutine is run so that a soft time limit can reach it.
        task.actor = declare(soft_limitable(task.fn) if task.is_async else task.fn)

    @property
    def tasks(self) -> dict[str, Task[Any, Any]]:
        """Every declared task by name (a copy)."""
        with self._lock:
            return dict(self._tasks)

    def get_task(self, name: str) -> Task[Any, Any]:
        """Return the task registered as ``name``; a bare function name works when unambiguous.

        Raises:
          TaskNotFound: naming close matches, if any.
        """
        with self._lock:
            task = self._tasks.get(name)
            if task is not None:
                return task
            by_short_name = [t for t in self._tasks.values() if t.name.rsplit(".", 1)[-1] == name]
            if len(by_short_name) == 1:
                return by_short_name[0]
            names = sorted(self._tasks)
        if len(by_short_name) > 1:
            choices = ", ".join(t.name for t in by_short_name)
            raise TaskNotFound(f"task name {name!r} is ambiguous: {choices}")
        # A misspelt bare function name is far from every full name: match it to the short ones.
        full_names_by_short: dict[str, list[str]] = {}
        for full_name in names:
            full_names_by_short.setdefault(full_name.rsplit(".", 1)[-1], []).append(full_name)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        if not close:
            shorts = difflib.get_close_matches(name, list(full_names_by_short), n=3, cutoff=0.6)
            close = [full_name for short in shorts for full_name in full_names_by_short[short]][:3]
        hint = (
            f"; did you mean {', '.join(close)}?"
            if close
            else (f"; known tasks: {', '.join(names)}" if names else "; no tasks are registered")
        )
        raise TaskNotFound(f"unknown task {name!r}{hint}")


def _origin(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    where = f"{code.co_filename}:{code.co_firstlineno}" if code else repr(fn)
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')} ({where})"


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


def _retry_only_on(
    retry_on: type[BaseException] | tuple[type[BaseException], ...], max_retries: int
) -> Callable[[int, BaseException], bool]:
    types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    for exc_type in types:
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise TaskOptionError(f"retry_on takes exception types, not {exc_type!r}")

    def retry_when(retries: int, exception: BaseException) -> bool:
        return retries < max_retries and isinstance(exception, types)

    return retry_when


task_managers.bind(TaskManager, TaskManager.close)
