"""Soft time limits: a task gets :class:`~aury_tasks.core.errors.SoftTimeLimitExceeded`, which it may
catch to clean up, before its hard time limit (Dramatiq's ``TimeLimit``) stops it for good.

A sync task gets the exception raised in its thread, the way ``TimeLimit`` raises
``TimeLimitExceeded``: one timer thread per worker process, started with the first soft limit.
An async task's coroutine gets it at the ``await`` where it waits: its asyncio task is cancelled
(by a timer on the event loop) and the cancellation is thrown into the coroutine as a
``SoftTimeLimitExceeded`` that is also an ``asyncio.CancelledError``, so asyncio's own code
(``wait_for``, ``gather``) handles it as the cancellation it is (a ``TaskGroup`` raises it in an
``ExceptionGroup``). A task that catches it and returns has succeeded; one that lets it escape
has failed with it, like with any error.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
import types
import weakref
from collections.abc import Callable, Coroutine, Generator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, TypeVar

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.threading import raise_thread_exception
from loguru import logger

from ..core.errors import SoftTimeLimitExceeded
from .delivery import DeliveryMiddleware, Outcome

R = TypeVar("R")

#: The actor and message option: the soft time limit in milliseconds. A message option (also
#: ``None`` or ``0``, meaning none) overrides the actor's, as ``time_limit`` does.
OPTION = "soft_time_limit"
#: The functions :func:`soft_limitable` made (what the worker runs for an async task; a wrapper made
#: with ``functools.wraps`` is followed to them through ``__wrapped__``).
_soft_limitable: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()
#: The message an async task's soft-limit cancellation carries (seen in a traceback).
_CANCEL_MESSAGE = "soft time limit exceeded"
_NEVER = float("inf")


@dataclass(frozen=True)
class _Limit:
    task_id: str
    seconds: float
    deadline: float  # time.monotonic()


#: The soft limit of the task the worker thread runs; copied into the context of its coroutine.
_current_limit: ContextVar[_Limit | None] = ContextVar("aury_soft_time_limit", default=None)


class SoftTimeLimit(DeliveryMiddleware):
    """Enforces the ``soft_time_limit`` option (ms) of actors and messages in a worker.

    A task without one costs two dictionary look-ups before it runs and one after.
    """

    def __init__(self) -> None:
        self._timer: _Deadlines | None = None
        self._timer_lock = threading.Lock()
        # worker thread id -> the context token of an async task's limit, or None for a sync task
        self._armed: dict[int, Token[_Limit | None] | None] = {}
        self._kinds: dict[str, str] = {}

    @property
    def actor_options(self) -> set[str]:
        return {OPTION}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        options = message.options
        actor = broker.get_actor(message.actor_name)
        limit_ms = options[OPTION] if OPTION in options else actor.options.get(OPTION)
        if not limit_ms:
            return
        seconds = float(limit_ms) / 1000
        limit = _Limit(message.message_id, seconds, time.monotonic() + seconds)
        kind = self._kinds.get(actor.actor_name) or self._kinds.setdefault(actor.actor_name, _kind_of(actor))
        thread_id = threading.get_ident()
        if kind == "sync":
            self._deadlines().arm(thread_id, limit)
            self._armed[thread_id] = None
        elif kind == "async":
            self._armed[thread_id] = _current_limit.set(limit)
        else:
            logger.warning("soft time limit of {} not enforced: an async actor not declared with "
                           "@tm.conditional_task", actor.actor_name)  # fmt: skip

    def after_delivery(self, broker: dramatiq.Broker, message: MessageProxy, outcome: Outcome) -> None:
        thread_id = threading.get_ident()
        if thread_id not in self._armed:
            return
        token = self._armed.pop(thread_id)
        if token is not None:
            _current_limit.reset(token)
            return
        assert self._timer is not None
        try:
            self._timer.disarm(thread_id)
        except SoftTimeLimitExceeded:
            # The limit passed just as the task returned: it was raised here, after the task.
            logger.debug("task {} ended as its soft time limit passed", message.message_id)

    def _deadlines(self) -> _Deadlines:
        if self._timer is None:
            with self._timer_lock:
                if self._timer is None:
                    timer = _Deadlines()
                    timer.start()
                    self._timer = timer
        return self._timer


def _kind_of(actor: dramatiq.Actor[Any, Any]) -> str:
    """``sync``, ``async`` (a coroutine made by :func:`soft_limitable`) or ``other`` (an async
    actor declared some other way, whose coroutine cannot be reached)."""
    if inspect.unwrap(actor.fn, stop=_soft_limitable.__contains__) in _soft_limitable:
        return "async"
    return "other" if inspect.iscoroutinefunction(inspect.unwrap(actor.fn)) else "sync"


class _Deadlines(threading.Thread):
    """The process's timer thread: raises ``SoftTimeLimitExceeded`` in worker threads at their deadline.

    It sleeps until the earliest deadline (or until an earlier one is armed), not on a fixed tick.
    The exception is raised while the lock is held, so a thread that :meth:`disarm` ed has either
    not been interrupted, or has been before ``disarm`` returns.
    """

    def __init__(self) -> None:
        super().__init__(name="aury-soft-time-limit", daemon=True)
        self._limits: dict[int, _Limit] = {}
        self._changed = threading.Condition()
        self._waking_at = _NEVER

    def arm(self, thread_id: int, limit: _Limit) -> None:
        """Interrupt ``thread_id`` at ``limit.deadline`` unless disarmed first."""
        with self._changed:
            self._limits[thread_id] = limit
            if limit.deadline < self._waking_at:
                self._changed.notify()

    def disarm(self, thread_id: int) -> None:
        """Forget the limit of ``thread_id`` (its task has ended)."""
        with self._changed:
            self._limits.pop(thread_id, None)

    def run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for thread_id, limit in list(self._limits.items()):
                    if limit.deadline <= now:
                        del self._limits[thread_id]
                        logger.warning("task {} passed its soft time limit of {:g} s: raising "
                                       "SoftTimeLimitExceeded", limit.task_id, limit.seconds)  # fmt: skip
                        raise_thread_exception(thread_id, SoftTimeLimitExceeded)
                deadlines = [limit.deadline for limit in self._limits.values()]
                self._waking_at = min(deadlines, default=_NEVER)
                self._changed.wait(None if not deadlines else self._waking_at - now)


# Async tasks


class _SoftCancellation(SoftTimeLimitExceeded, asyncio.CancelledError):
    """What an async task's coroutine gets at its soft limit: catchable as ``SoftTimeLimitExceeded``,
    handled by asyncio as the cancellation it is. Turned into a plain ``SoftTimeLimitExceeded``
    (an ordinary failure, not a cancelled asyncio task) if it escapes the task."""


def soft_limitable(fn: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """``fn`` (an ``async def`` function) run so that a soft time limit reaches its coroutine.

    What the worker runs for an async task (see :meth:`TaskManager.conditional_task`); without a
    soft limit it only awaits ``fn``.

    >>> actor_fn = soft_limitable(send_welcome_email)
    """

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        limit = _current_limit.get()
        if limit is None:
            return await fn(*args, **kwargs)
        return await _run_limited(fn(*args, **kwargs), limit)

    _soft_limitable.add(run)
    return run


class _Cancel:
    """The soft-limit cancellation of one asyncio task: fired once, converted once."""

    def __init__(self, task: asyncio.Task[Any], limit: _Limit) -> None:
        self.task, self.limit = task, limit
        self.fired = self.converted = self.preempted = False

    def fire(self) -> None:
        if self.preempted:
            return  # already being cancelled (a durable cancel): leave its clean-up alone
        self.fired = True
        logger.warning("task {} passed its soft time limit of {:g} s: cancelling it with "
                       "SoftTimeLimitExceeded", self.limit.task_id, self.limit.seconds)  # fmt: skip
        self.task.cancel(_CANCEL_MESSAGE)

    def convert(self, error: asyncio.CancelledError) -> BaseException:
        """The exception to throw into the coroutine for the cancellation ``error``."""
        if not self.fired or self.converted:
            # Another cancellation: the hard limit, a durable cancel (or a future it awaited that
            # something else cancelled, when the task itself is not being cancelled).
            cancelling = getattr(self.task, "cancelling", None)  # Python 3.11+
            self.preempted = self.preempted or bool(cancelling is not None and cancelling())
            return error
        self.converted = True
        uncancel = getattr(self.task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()  # handed to the coroutine as ours: a later asyncio.timeout() works as usual
        return _SoftCancellation(f"soft time limit of {self.limit.seconds:g} s exceeded")


async def _run_limited(coro: Coroutine[Any, Any, R], limit: _Limit) -> R:
    task = asyncio.current_task()
    assert task is not None
    cancel = _Cancel(task, limit)
    timer = asyncio.get_running_loop().call_later(max(0.0, limit.deadline - time.monotonic()), cancel.fire)
    try:
        return await _converting(coro, cancel)
    except _SoftCancellation as exc:
        # Escaped: the task fails with it, as a sync task would (not as a cancelled asyncio task).
        raise SoftTimeLimitExceeded(exc.message).with_traceback(exc.__traceback__) from None
    finally:
        timer.cancel()


@types.coroutine
def _converting(coro: Coroutine[Any, Any, R], cancel: _Cancel) -> Generator[Any, Any, R]:
    """Await ``coro``, throwing the soft-limit cancellation into it as ``SoftTimeLimitExceeded``.

    Drives ``coro`` step by step as ``await`` would, so the exception lands at the ``await`` where
    the coroutine waits.
    """
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            yielded = coro.send(sent) if thrown is None else coro.throw(thrown)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        sent = thrown = None
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except asyncio.CancelledError as exc:
            thrown = cancel.convert(exc)
        except BaseException as exc:
            thrown = exc
