"""The ledger middleware: writes every task's record as Dramatiq moves its message.

Where each status comes from (Dramatiq's hook order):

* ``before_enqueue``: ``pending`` or ``scheduled`` for a new message; ``retrying`` when the
  Retries middleware re-enqueues a failed one (it runs inside the failed attempt's ``except``,
  so the error is at hand); ``pending`` when a worker moves a due delayed message to its queue.
* ``before_process_message``: a cancelled or expired task is skipped here; otherwise ``started``
  is written by :class:`~aury_tasks.middleware.upkeep.StartWriter` once the task has run
  0.1 s, so a short task costs no start write at all and a long one shows ``started``.
* ``after_process_message``: ``success`` with the result, or ``failure`` when the message is
  failed for good; kept on the message until its ack or nack.
* ``before_ack`` / ``before_nack``: the final write rides with the ack or nack; a nack without
  one (an unknown task, ``max_age`` exceeded) is ``dead``.

Writes ride on the broker's round trips through :class:`~aury_tasks.broker.redis.riders.Riders`.
"""

from __future__ import annotations

import contextvars
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, cast

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name
from dramatiq.middleware import SkipMessage
from dramatiq.middleware.time_limit import TimeLimitExceeded
from loguru import logger

from ..broker.redis.dramatiq_internals import on_consumer_thread, stuffed_exception
from ..broker.redis.riders import ENCODED_MESSAGE, Riders
from ..core.errors import TaskInterrupted
from ..core.keys import TIME_LIMIT_COUNTS_TTL
from ..core.status import TaskStatus
from ..ledger.redis_ledger import RedisLedger
from ..ledger.tally import StatsTally
from ..redis.outage import patiently
from ..redis.scripts import Write, run_pipelined
from .context import context_of
from .delivery import DeliveryMiddleware, Outcome
from .upkeep import CancelWatcher, RunningTasks, StartWriter, Upkeep

#: The task running in this context (thread, or the coroutine of an async task).
current_run: contextvars.ContextVar[TaskRun | None] = contextvars.ContextVar("aury_current_run", default=None)

#: Message options the ledger reads (set by ``send_with_options``); ``metadata`` is moved from
#: the message to the record.
LEDGER_OPTIONS = ("metadata", "expires_at", "retry_of")


@dataclass(slots=True)
class TaskRun:
    """One attempt of a task in this worker process."""

    task_id: str
    attempt: int
    started_at: float
    #: Where progress reports go (``None`` in eager mode: nothing is kept).
    ledger: LedgerWriter | None = None
    final: Write | None = field(default=None, repr=False)
    #: Whether :attr:`final` was sent already (by the workflow middleware), not to ride on the ack.
    final_sent: bool = False
    #: The idempotency key of this run, marked done in Redis once the task succeeded.
    idempotency_key: str | None = None


class LedgerWriter(DeliveryMiddleware):
    """Keeps each task's record in the ledger (see the module docstring).

    Parameters:
      store: the ledger; ``None`` keeps no state (the middleware then only declares its options).
      riders: how writes travel (riding on broker calls, or sent at once).
      start_delay: seconds a task runs before ``started`` is written.
    """

    def __init__(
        self, store: RedisLedger | None = None, riders: Riders | None = None, *, start_delay: float = 0.1
    ) -> None:
        self.store = store
        self.riders = riders
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self.running = RunningTasks()
        self.start_writer: StartWriter | None = None
        self.start_delay = start_delay
        self.cancels: CancelWatcher | None = None
        self.upkeep: Upkeep | None = None

    @property
    def actor_options(self) -> set[str]:
        return {"ignore_result", "idempotent"}

    # Worker process life

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.store is None:
            return
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self.store.tally = StatsTally(
            self.store.client, self.store.keys, hour_ttl=self.store.ttl_ms // 1000 + 3600
        )
        self.store.tally.start()
        self.start_writer = StartWriter(self.store, self.start_delay, self.worker_name)
        self.start_writer.start()
        self.cancels = CancelWatcher(self.store, self.running)
        self.cancels.start()
        self.cancels.wait_ready(timeout=5.0)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Announced once its consumers exist, so the first heartbeat already names its queues.
        if self.store is None:
            return
        self.upkeep = Upkeep(self.store, self.worker_name, worker, self.running)
        self.upkeep.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        for thread in (self.upkeep, self.cancels, self.start_writer):
            if thread is not None:
                thread.stop()
        self.upkeep = self.cancels = self.start_writer = None
        if self.store is not None and self.store.tally is not None:
            self.store.tally.close()  # (acknowledgements still being sent count as they come)

    # Enqueue

    def before_enqueue(
        self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int | None
    ) -> None:
        store, riders = self.store, self.riders
        if store is None or riders is None:
            return
        options = message.options
        task_id = message.message_id
        retries = options.get("retries", 0)
        run = current_run.get()
        if run is not None and run.task_id == task_id and retries + 1 == run.attempt:
            # Flow control deferring the attempt under way (same task, same attempt): neither a new
            # send nor a retry, so the record stays as it is.
            return
        encoded: bytes | None = None
        if on_consumer_thread():
            # A delayed message whose eta came, moved to its queue by the worker.
            write = store.transition_write(task_id, TaskStatus.PENDING, attempt=retries + 1)
        elif retries:
            # The Retries middleware re-enqueues the attempt that just failed.
            error = _error_fields(sys.exc_info()[1], retries)
            eta = options.get("eta")
            write = store.transition_write(
                task_id,
                TaskStatus.RETRYING,
                attempt=retries,
                error={
                    "attempt": retries,
                    "type": error["error_type"],
                    "message": error["error_message"],
                    "at": time.time(),
                },
                traceback=options.get("traceback"),
                eta=eta / 1000 if eta else None,
                **error,
            )
        else:
            metadata = options.pop("metadata", None)
            eta, expires_at = options.get("eta"), options.get("expires_at")
            if not riders.riding:
                encoded = message.encode()
            wf = options.get("aury_wf")
            write = store.send_write(
                task_id,
                TaskStatus.SCHEDULED if delay else TaskStatus.PENDING,
                queue_name=q_name(message.queue_name),
                task_name=message.actor_name,
                now=time.time(),  # (the index's score and the record's enqueued_at agree)
                eta=eta / 1000 if eta else None,
                expires_at=expires_at / 1000 if expires_at else None,
                metadata=metadata,
                retry_of=options.get("retry_of"),
                workflow_id=wf.get("wf") if wf else None,
                message=ENCODED_MESSAGE,
            )
        riders.add(options.get("redis_message_id", task_id), write, encoded)

    # Processing

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        store = self.store
        if store is None:
            return
        task_id = message.message_id
        now = time.time()
        run = TaskRun(task_id, message.options.get("retries", 0) + 1, now, ledger=self)
        context = context_of(message)
        context.run = run
        current_run.set(run)
        self.running.add(task_id)
        if self.cancels is not None and self.cancels.is_cancelled(task_id):
            run.final = store.transition_write(task_id, TaskStatus.CANCELLED, attempt=0, reason="cancelled")
            context.skip_status = TaskStatus.CANCELLED
            raise SkipMessage(f"task {task_id} was cancelled")
        expires_at = message.options.get("expires_at")
        if expires_at is not None and now * 1000 > expires_at:
            run.final = store.transition_write(
                task_id, TaskStatus.EXPIRED, attempt=run.attempt, finished_at=now, reason="expired"
            )
            context.skip_status = TaskStatus.EXPIRED
            raise SkipMessage(f"task {task_id} expired")
        key = _idempotency_key(broker, message)
        if key is not None:
            done_key = store.keys.idempotency_done(key)
            done_by = cast("str | None", patiently("idempotency check", lambda: store.client.get(done_key)))
            if done_by is not None:  # its effect is done: a redelivery, or a second send of the same work
                run.final = store.transition_write(
                    task_id, TaskStatus.SUCCESS, attempt=run.attempt, finished_at=now,
                    reason=f"not run: idempotency key {key!r} was done by task {done_by}",
                )  # fmt: skip
                raise SkipMessage(f"task {task_id}: idempotency key {key!r} done already")
            run.idempotency_key = key
        if self.start_writer is not None:
            self.start_writer.schedule(task_id, run.attempt, now)

    def after_delivery(self, broker: dramatiq.Broker, message: MessageProxy, outcome: Outcome) -> None:
        run, store = context_of(message).run, self.store
        if run is None:
            return
        self._end_run(run)
        if store is None or outcome.skipped:
            return
        finished, exception = time.time(), outcome.exception
        common: dict[str, Any] = {
            "attempt": run.attempt,
            "started_at": run.started_at,
            "finished_at": finished,
            "duration": finished - run.started_at,
            "worker": self.worker_name,
            "queue_name": q_name(message.queue_name),
            "task_name": message.actor_name,
        }
        if isinstance(exception, TimeLimitExceeded):  # rare: a write of its own, for the alerts
            _count_time_limit(store, q_name(message.queue_name), message.actor_name, finished)
        if exception is None:
            ignore = broker.get_actor(message.actor_name).options.get("ignore_result", False)
            run.final = _success_write(store, run, None if ignore else outcome.result, common)
        elif isinstance(exception, TaskInterrupted):
            run.final = store.transition_write(
                run.task_id, TaskStatus.CANCELLED, reason="cancelled", **common
            )
        elif message.failed:
            error = _error_fields(exception, run.attempt)
            run.final = store.transition_write(
                run.task_id,
                TaskStatus.FAILURE,
                traceback=_traceback_of(exception),
                dead_letter_id=message.options.get("redis_message_id"),
                error={
                    "attempt": run.attempt,
                    "type": error["error_type"],
                    "message": error["error_message"],
                    "at": finished,
                },
                **error,
                **common,
            )
        # Otherwise the attempt is being retried: its write rode on the re-enqueue.

    def _end_run(self, run: TaskRun) -> None:
        self.running.remove(run.task_id)
        if self.start_writer is not None:
            self.start_writer.cancel(run.task_id)
        current_run.set(None)

    # Ack and nack

    def before_ack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        run = context_of(message).run
        if run is not None and run.final is not None and not run.final_sent and self.riders is not None:
            self.riders.add(message.options.get("redis_message_id", message.message_id), run.final)

    def before_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        store, riders = self.store, self.riders
        if store is None or riders is None:
            return
        run = context_of(message).run
        if run is not None and run.final_sent:
            return
        write = run.final if run is not None else None
        if write is None:
            exception = stuffed_exception(message)
            reason = _dead_reason(message, exception)
            write = store.transition_write(
                message.message_id,
                TaskStatus.DEAD,
                attempt=message.options.get("retries", 0) + 1,
                queue_name=q_name(message.queue_name),
                task_name=message.actor_name,
                finished_at=time.time(),
                reason=reason,
                dead_letter_id=message.options.get("redis_message_id"),
            )
        riders.add(message.options.get("redis_message_id", message.message_id), write)

    # Progress

    def report(self, run: TaskRun, write: Write) -> bool:
        """Send a progress write for ``run``, with its start write if that is still waiting."""
        assert self.store is not None
        start = self.start_writer.cancel(run.task_id) if self.start_writer is not None else None
        if start is None:
            return bool(write.run(self.store.client))
        return bool(run_pipelined(self.store.client, [start], write))


def _idempotency_key(broker: dramatiq.Broker, message: MessageProxy) -> str | None:
    """The message's ``idempotency_key``, or its task id for a task declared ``idempotent=True``."""
    key = message.options.get("idempotency_key")
    if key is not None:
        return str(key)
    try:
        idempotent = broker.get_actor(message.actor_name).options.get("idempotent", False)
    except dramatiq.errors.ActorNotFound:
        return None
    return message.message_id if idempotent else None


def _success_write(store: RedisLedger, run: TaskRun, result: Any, common: dict[str, Any]) -> Write:
    """The final write of a run that returned ``result`` (a failure if it is not JSON).

    An idempotency key is marked done first, in a round trip of its own before the ack (waiting
    out a failover): a redelivery from now on is not run again.
    """
    if run.idempotency_key is not None:
        done_key, ttl = store.keys.idempotency_done(run.idempotency_key), int(store.ttl)
        patiently("idempotency mark", lambda: store.client.set(done_key, run.task_id, ex=ttl))
    try:
        return store.transition_write(run.task_id, TaskStatus.SUCCESS, result=result, **common)
    except (TypeError, ValueError) as exc:
        logger.warning("task {} returned a value that is not JSON; not stored: {}", run.task_id, exc)
        return store.transition_write(
            run.task_id,
            TaskStatus.FAILURE,
            error_type="SerializationError",
            error_message=f"the task's return value is not JSON: {exc}",
            **common,
        )


def _error_fields(exception: BaseException | None, attempt: int) -> dict[str, Any]:
    if exception is None:
        return {"error_type": "", "error_message": ""}
    return {"error_type": type(exception).__name__, "error_message": str(exception)[:2000]}


def _traceback_of(exception: BaseException | None) -> str | None:
    # From the exception itself: Dramatiq's Retries keeps one in the message options only when
    # it retries, so a PermanentError (or any error in ``throws``) would show none, or the
    # traceback of an earlier attempt.
    if exception is None:
        return None
    return "".join(traceback.format_exception(type(exception), exception, exception.__traceback__, limit=30))


def _dead_reason(message: MessageProxy, exception: BaseException | None) -> str:
    if isinstance(exception, dramatiq.errors.ActorNotFound):
        return f"unknown task {message.actor_name!r}"
    if isinstance(exception, SkipMessage):
        return str(exception) or "skipped"
    if exception is not None:
        return f"{type(exception).__name__}: {exception}"[:500]
    return "dead-lettered"


def _count_time_limit(store: RedisLedger, queue_name: str, task_name: str, now: float) -> None:
    """Count a task that hit its time limit in its minute (all, its queue, its task name)."""
    key = store.keys.time_limit_counts(int(now // 60))
    try:
        pipe = store.client.pipeline(transaction=False)
        for field_name in ("", f"q:{queue_name}", f"t:{task_name}"):
            pipe.hincrby(key, field_name, 1)
        pipe.expire(key, TIME_LIMIT_COUNTS_TTL)
        pipe.execute()
    except redis.RedisError as exc:  # a count lost is not worth failing the ack for
        logger.warning("could not count a time limit hit: {}", exc)
