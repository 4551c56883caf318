"""The decorated task: a callable function that can also be sent to a worker."""

from __future__ import annotations

import contextlib
import inspect
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import dramatiq
import redis

from ..broker.build import enqueue_many as broker_enqueue_many
from ..broker.redis.base import FastRedisBroker
from ..core.coroutines import run_coroutine_sync
from ..core.encoding import (
    NOT_JSON,
    StrictJSONEncoder,
    check_json_arguments,
    check_json_metadata,
    payload_limit,
    unserializable_argument,
)
from ..core.errors import (
    BrokerUnavailable,
    ConfigError,
    LedgerUnavailable,
    PayloadTooLarge,
    ReplicationTimeout,
    TaskOptionError,
)
from ..core.ids import new_id, new_ids
from ..core.redaction import redact_text
from ..core.run_mode import RunMode
from ..middleware.ledger import TaskRun, current_run
from ..middleware.limits import claim_unique, release_unique
from ..workflows.canvas import Signature
from .handle import TaskHandle

if TYPE_CHECKING:
    from ..middleware.limits import Uniqueness
    from .manager import TaskManager

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A function declared with ``@tm.conditional_task``.

    Calling the task calls the function directly; :meth:`send` enqueues it for a worker (or,
    in eager mode, runs it inline). In a worker process the task is also a Dramatiq actor
    (:attr:`actor`); in a producer it only sends, in exactly the same message format.
    """

    def __init__(
        self,
        manager: TaskManager,
        fn: Callable[P, R] | Callable[P, Awaitable[R]],
        *,
        name: str,
        queue_name: str,
        priority: int,
        options: Mapping[str, Any],
    ) -> None:
        self.manager = manager
        self.fn = fn
        #: The registered name; the worker looks the function up by it.
        self.name = name
        #: The queue the task is sent to unless ``send_with_options(queue_name=…)`` says otherwise.
        self.queue_name = queue_name
        #: 0 (default) to 9; higher runs first (``send_with_options(priority=…)`` overrides it).
        self.priority = priority
        #: Dramatiq actor options (``max_retries``, ``time_limit`` in ms, ``min_backoff`` …).
        self.options = dict(options)
        #: The Dramatiq actor, in worker mode once the broker is built; ``None`` otherwise.
        self.actor: dramatiq.Actor[Any, Any] | None = None
        #: How identical sends are recognised, for a task declared with ``unique_for``.
        self.uniqueness: Uniqueness | None = None
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue_name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Call the function itself, in this process."""
        return self.fn(*args, **kwargs)

    @property
    def is_async(self) -> bool:
        """Whether the function is ``async def``."""
        return inspect.iscoroutinefunction(self.fn)

    @property
    def max_retries(self) -> int:
        """How many times a failure is retried."""
        return int(self.options.get("max_retries", 0))

    @property
    def timeout(self) -> float:
        """The time limit, in seconds."""
        return float(self.options.get("time_limit", 0)) / 1000

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Check that the function takes these arguments, as a call would (what a send from
        outside Python, such as the REST API, does before sending).

        Raises:
          TaskOptionError: naming what does not fit, e.g. ``missing a required argument: 'y'``.
        """
        try:
            inspect.signature(self.fn).bind(*args, **kwargs)
        except TypeError as exc:
            raise TaskOptionError(f"{self.name}: wrong arguments: {exc}") from None

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature of this task for a workflow; the previous step's result is appended to ``args``.

        >>> chain(fetch.s("https://example.com"), parse.s(), store.s(table="pages")).send()
        """
        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: it runs with exactly these arguments, ignoring the previous result."""
        return Signature(self, args, kwargs, immutable=True)

    def send(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Enqueue the task with these arguments.

        Returns:
          TaskHandle: carrying the task id.

        Raises:
          SerializationError: (a ``TypeError``) naming an argument that is not JSON.
          BrokerUnavailable: when the broker cannot be reached.
        """
        return self.send_with_options(args=args, kwargs=kwargs)

    def send_with_options(
        self,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        delay: float | None = None,
        eta: datetime | None = None,
        expires: float | datetime | None = None,
        priority: int | None = None,
        queue_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> TaskHandle:
        """Enqueue the task with options.

        Parameters:
          args: positional arguments (JSON values).
          kwargs: keyword arguments (JSON values).
          delay: seconds to wait before the task may run.
          eta: when the task may run (an aware ``datetime``; a naive one is local time).
          expires: seconds from now, or a ``datetime``, after which the task is not run any more
            (status ``expired``).
          priority: 0 to 9, higher runs first (default: the task's ``priority``).
          queue_name: send to this queue instead of the task's own.
          metadata: JSON values kept on the task's record, e.g. ``{"user_id": "42"}``.
          idempotency_key: once a task sent with this key has succeeded, a message with the same
            key (a redelivery, or another send of the same work) is acknowledged without running;
            its record says why. Kept for ``TASK_RESULT_TTL``.
          **options: further Dramatiq message options (``max_retries``, ``time_limit`` …).

        Returns:
          TaskHandle: carrying the task id.
        """
        shared, delay_ms = self._message_options(
            delay=delay, eta=eta, expires=expires, priority=priority, metadata=metadata, options=options
        )
        if idempotency_key is not None:
            if not isinstance(idempotency_key, str) or not idempotency_key or len(idempotency_key) > 256:
                raise TaskOptionError(
                    f"idempotency_key is text of 1 to 256 characters, got {idempotency_key!r}"
                )
            shared["idempotency_key"] = idempotency_key
        args, kwargs = tuple(args), dict(kwargs or {})
        target_queue = queue_name or self.queue_name
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=target_queue, actor_name=self.name, args=args, kwargs=kwargs, options=shared,
            message_id=new_id(),
        )  # fmt: skip
        if self.manager.run_mode is RunMode.EAGER:
            self._check_eager_send(message)
            return self._run_eagerly(target_queue, args, kwargs)
        if self.uniqueness is not None:
            return self._send_unique(message, delay_ms)
        return enqueue(self.manager, message, delay_ms, owned=True)

    def send_many(
        self,
        calls: Iterable[Sequence[Any] | Mapping[str, Any]],
        *,
        delay: float | None = None,
        eta: datetime | None = None,
        expires: float | datetime | None = None,
        priority: int | None = None,
        queue_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> list[TaskHandle]:
        """Enqueue the task once per item of ``calls``, in batched round trips.

        Each item is a tuple (or list) of positional arguments or a dict of keyword arguments
        (a single dict argument is ``(a_dict,)``). The options apply to every task, as in
        :meth:`send_with_options`. Each message is checked as ``send`` checks it; on Redis, a
        message that fails the check means none is sent. A task declared with ``unique_for`` is
        sent one item at a time (each claims its lock).

        >>> handles = resize.send_many([(path, 512) for path in paths])
        >>> handles = notify.send_many([{"user_id": uid} for uid in user_ids], queue_name="bulk")

        Returns:
          list[TaskHandle]: one per item, in order.
        """
        split = [_arguments_of(self.name, call) for call in calls]
        shared, delay_ms = self._message_options(
            delay=delay, eta=eta, expires=expires, priority=priority, metadata=metadata, options=options
        )
        target_queue = queue_name or self.queue_name
        messages: list[dramatiq.Message[Any]] = [
            dramatiq.Message(queue_name=target_queue, actor_name=self.name, args=args, kwargs=kwargs,
                             options=dict(shared), message_id=task_id)
            for (args, kwargs), task_id in zip(split, new_ids(len(split)), strict=True)
        ]  # fmt: skip
        if self.manager.run_mode is RunMode.EAGER:
            for message in messages:
                self._check_eager_send(message)
            return [self._run_eagerly(target_queue, args, kwargs) for args, kwargs in split]
        if self.uniqueness is not None:
            return [self._send_unique(message, delay_ms) for message in messages]
        return enqueue_many(self.manager, [(message, delay_ms) for message in messages], owned=True)

    def _check_eager_send(self, message: dramatiq.Message[Any]) -> None:
        """Refuse, in eager mode, what a real send would refuse (non-JSON, over the size cap)."""
        check_json_arguments(self.name, message.args, message.kwargs)
        with payload_limit(self.manager.settings.max_message_bytes, self.name):
            StrictJSONEncoder().encode(message.asdict())

    def _message_options(
        self,
        *,
        delay: float | None,
        eta: datetime | None,
        expires: float | datetime | None,
        priority: int | None,
        metadata: Mapping[str, Any] | None,
        options: dict[str, Any],
    ) -> tuple[dict[str, Any], int | None]:
        """The message options of a send (priority, expiry, metadata checked) and its delay in ms."""
        delay_ms = _delay_ms(delay, eta)
        effective_priority = self.priority if priority is None else priority
        if priority is not None and (
            not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 9
        ):
            raise TaskOptionError(f"{self.name}: priority is an integer from 0 to 9, got {priority!r}")
        if effective_priority:
            options["priority"] = options["broker_priority"] = effective_priority
        if expires is not None:
            options["expires_at"] = _expires_at_ms(expires)
        if metadata:
            check_json_metadata(self.name, metadata, self.manager.settings.max_message_bytes)
            options["metadata"] = dict(metadata)
        return options, delay_ms

    def _send_unique(self, message: dramatiq.Message[Any], delay_ms: int | None) -> TaskHandle:
        """Enqueue ``message`` unless an identical send (``unique_for``) is still pending or running.

        Returns:
          TaskHandle: of the new task, or of the identical one (then nothing was enqueued).

        Raises:
          LedgerUnavailable: (a ``ConfigError``) when task state is not kept: the lock reads it.
        """
        assert self.uniqueness is not None
        try:
            store = self.manager.store
        except LedgerUnavailable:
            raise LedgerUnavailable(
                f"{self.name} is declared with unique_for, which needs task state kept in Redis:"
                " set TASK_RESULT_BACKEND_URL to a Redis URL (and TASK_TRACK_STATE=true)"
            ) from None
        digest = self.uniqueness.digest(message.args, message.kwargs)
        holder = claim_unique(
            store.client, store.keys, self.name, digest, message.message_id, self.uniqueness.seconds
        )
        if holder is not None:
            return TaskHandle(
                id=holder, task_name=self.name, queue_name=message.queue_name, _manager=self.manager
            )
        try:
            return enqueue(self.manager, message, delay_ms)
        except BaseException:
            release_unique(store.client, store.keys, self.name, digest, message.message_id)
            raise

    def _run_eagerly(self, queue_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskHandle:
        # Round-trip through JSON so the function sees what a worker would (tuples become lists).
        args, kwargs = json.loads(json.dumps([list(args), kwargs]))
        task_id = str(uuid.uuid4())
        token = current_run.set(TaskRun(task_id, 1, time.time()))
        try:
            result = self.fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = run_coroutine_sync(result)
        finally:
            current_run.reset(token)
        return TaskHandle(id=task_id, task_name=self.name, queue_name=queue_name, _eager_result=result)


def enqueue(
    manager: TaskManager, message: dramatiq.Message[Any], delay_ms: int | None = None, *, owned: bool = False
) -> TaskHandle:
    """Send ``message`` through ``manager``'s broker; the one path every send takes.

    ``owned``: the message was made for this send alone; on Redis it is completed in place rather
    than copied (see :func:`~aury_tasks.broker.redis.base.prepare_for_enqueue`).

    Raises:
      SerializationError: (a ``TypeError``) naming an argument that is not JSON.
      PayloadTooLarge: (a ``ValueError``) when the message is over ``TASK_MAX_MESSAGE_BYTES``.
      ConfigError: (a ``ValueError``) when the broker's Redis refuses the URL's credentials.
      BrokerUnavailable: when the broker cannot be reached.
    """
    broker = manager.broker_for_queue(message.queue_name)
    with _sending(manager, [message]):
        if owned and isinstance(broker, FastRedisBroker):
            broker.enqueue(message, delay=delay_ms, owned=True)
        else:
            broker.enqueue(message, delay=delay_ms)
    return _handle_of(manager, message, delay_ms)


def enqueue_many(
    manager: TaskManager, messages: Sequence[tuple[dramatiq.Message[Any], int | None]], *, owned: bool = False
) -> list[TaskHandle]:
    """Send ``(message, delay in ms or None)`` pairs in batched round trips (one by one off Redis).

    Each message is held to the same rules as :func:`enqueue`; on Redis, one that breaks them
    means nothing is sent. ``owned``: the messages were made for this call alone (they may be
    completed in place rather than copied).

    Raises:
      The errors of :func:`enqueue`.
    """
    if not messages:
        return []
    broker = manager.broker
    for queue_name in {message.queue_name for message, _ in messages}:
        manager.broker_for_queue(queue_name)
    with _sending(manager, [message for message, _ in messages]):
        broker_enqueue_many(broker, messages, owned=owned)
    return [_handle_of(manager, message, delay_ms) for message, delay_ms in messages]


@contextlib.contextmanager
def _sending(manager: TaskManager, messages: list[dramatiq.Message[Any]]) -> Iterator[None]:
    """Hold the messages sent in this block to the size cap and turn broker errors into ours."""
    first = messages[0]
    try:
        with payload_limit(manager.settings.max_message_bytes, first.actor_name):
            yield
    except PayloadTooLarge:
        raise
    except ReplicationTimeout as exc:
        raise ReplicationTimeout(
            f"cannot confirm the send of {first.actor_name}: {exc}; it may or may not be kept"
            " (send again with the same idempotency_key= to have it run once)"
        ) from None
    except NOT_JSON as exc:
        # A message is encoded (strict JSON) before anything is written: name the bad argument.
        for message in messages:
            error = unserializable_argument(message.actor_name, message.args, message.kwargs)
            if error is not None:
                raise error from None
        raise exc
    except redis.AuthenticationError as exc:
        # A subclass of ConnectionError, but a setting to fix rather than an outage (as `aum worker` says).
        raise ConfigError(
            f"invalid setting TASK_BROKER_URL: {manager.broker_info.display_url} refused its credentials"
            f" ({redact_text(str(exc))[:120]})"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError, dramatiq.errors.BrokerConnectionError) as exc:
        raise BrokerUnavailable(
            f"cannot send {first.actor_name}: broker {manager.broker_info.display_url} unreachable"
            f" ({redact_text(str(exc))})"
        ) from None


def _handle_of(manager: TaskManager, message: dramatiq.Message[Any], delay_ms: int | None) -> TaskHandle:
    when = None
    if delay_ms:
        when = datetime.fromtimestamp(time.time() + delay_ms / 1000, tz=timezone.utc)
    return TaskHandle(
        id=message.message_id, task_name=message.actor_name, queue_name=message.queue_name, eta=when,
        _manager=manager,
    )  # fmt: skip


def _arguments_of(task_name: str, call: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments of one item of ``send_many``."""
    if isinstance(call, Mapping):
        return (), dict(call)
    if isinstance(call, (tuple, list)):
        return tuple(call), {}
    raise TaskOptionError(
        f"{task_name}.send_many takes, per task, a tuple of positional arguments or a dict of keyword"
        f" arguments, got {call!r}"
    )


def _expires_at_ms(expires: float | datetime) -> int:
    moment = expires.timestamp() if isinstance(expires, datetime) else time.time() + expires
    return int(moment * 1000)


def _delay_ms(delay: float | None, eta: datetime | None) -> int | None:
    if delay is not None and eta is not None:
        raise ValueError("give delay or eta, not both")
    if eta is not None:
        delay = eta.timestamp() - time.time()
    if delay is None or delay <= 0:
        return None
    return int(delay * 1000)
