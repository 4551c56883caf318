"""TaskManager: the task registry, the broker it sends through, and ``conditional_task``."""

from __future__ import annotations

import difflib
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

import dramatiq

from ..broker.build import BrokerInfo
from ..core.errors import TaskNotFound, TaskOptionError
from ..core.instances import task_managers
from ..core.keys import KeySpace
from ..core.run_mode import RunMode
from ..middleware.soft_timeout import soft_limitable
from ..workflows.canvas import Canvas
from ..workflows.engine import send_workflow
from ..workflows.handle import WorkflowHandle
from .delegation import Delegated, DelegatedProperty
from .ledger import TaskLedger
from .options import TaskOptionArgs, TaskOptions
from .stack import build_broker
from .task import P, R, Task, enqueue_many

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..config.snapshot import Settings

F = TypeVar("F", bound=Callable[..., Any])


class TaskManager:
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
        #: The read and control side of the ledger; the calls below are delegated to it.
        self.ledger = TaskLedger(self)

    # The ledger: tm.<name> is tm.ledger.<name> (signature and docstring included)

    store = DelegatedProperty(TaskLedger.store)
    handle = Delegated(TaskLedger.handle)
    task_record = Delegated(TaskLedger.task_record)
    task_status = Delegated(TaskLedger.task_status)
    task_progress = Delegated(TaskLedger.task_progress)
    get_result = Delegated(TaskLedger.get_result)
    subscribe_progress = Delegated(TaskLedger.subscribe_progress)
    follow_async = Delegated(TaskLedger.follow_async)
    task_status_async = Delegated(TaskLedger.task_status_async)
    task_progress_async = Delegated(TaskLedger.task_progress_async)
    task_record_async = Delegated(TaskLedger.task_record_async)
    get_result_async = Delegated(TaskLedger.get_result_async)
    cancel = Delegated(TaskLedger.cancel)
    cancel_async = Delegated(TaskLedger.cancel_async)
    workflow = Delegated(TaskLedger.workflow)
    retry = Delegated(TaskLedger.retry)
    resend = Delegated(TaskLedger.resend)
    dead_letters = Delegated(TaskLedger.dead_letters)
    list_tasks = Delegated(TaskLedger.list_tasks)
    list_tasks_async = Delegated(TaskLedger.list_tasks_async)
    statistics = Delegated(TaskLedger.statistics)
    statistics_series = Delegated(TaskLedger.statistics_series)
    queue_stats = Delegated(TaskLedger.queue_stats)
    queues = Delegated(TaskLedger.queues)
    workers = Delegated(TaskLedger.workers)
    cleanup = Delegated(TaskLedger.cleanup)

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
    def keys(self) -> KeySpace:
        """The Redis keys of this manager's tasks: under its settings' ``TASK_KEY_PREFIX``.

        The broker (when Redis), the ledger and the scheduler built for this manager use the same.
        """
        return self.settings.keys

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
        self, fn: None = None, /, **options: Unpack[TaskOptionArgs]
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def conditional_task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
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
          **options: further Dramatiq actor options (``max_age``, ``throws``, ``on_failure`` …:
            those of :class:`~aury_tasks.tasks.options.ActorOptionArgs`).

        The keywords and their types are declared once, in
        :class:`~aury_tasks.tasks.options.TaskOptionArgs`; :class:`~aury_tasks.tasks.options.TaskOptions`
        checks them.

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
            return self._declare(fn, options)

        def decorator(function: F) -> Any:
            return self._declare(function, options)

        return decorator

    def _declare(self, fn: Callable[..., Any], options: Mapping[str, Any]) -> Task[Any, Any]:
        declared = TaskOptions.of(fn, self.settings, options)
        task: Task[Any, Any] = Task(
            self, fn, name=declared.name, queue_name=declared.queue_name, priority=declared.priority,
            options=declared.actor_options,
        )  # fmt: skip
        task.uniqueness = declared.uniqueness
        with self._lock:
            existing = self._tasks.get(task.name)
            if existing is not None and existing.fn is not fn and _origin(existing.fn) != _origin(fn):
                raise TaskOptionError(f"task name {task.name!r} is already taken by {_origin(existing.fn)}")
            self._tasks[task.name] = task
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


task_managers.bind(TaskManager, TaskManager.close)
