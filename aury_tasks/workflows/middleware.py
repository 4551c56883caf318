"""The worker side of workflows: when a step ends, start what follows.

Placed before the ledger middleware (and so before Retries): Dramatiq runs after-hooks in
reverse, so its ``after_process_message`` runs once Retries has decided whether a failure is
final and the ledger has made the step's final write.

A group member that succeeded hands its result to its group in the same round trip as its ack
and its final write (the join rides on the ack); when that join fires the group, what follows
is started by the :class:`~aury_tasks.workflows.continuations.Continuations` thread, and taken
over by another worker if this one dies first. Any other step (a chain's step, a failure)
starts what follows before its ack, its own final write sent first, so that its record has
ended before anything after it starts; a worker killed in between leaves the message to be
delivered again, and starting twice is harmless.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.errors import BrokerConnectionError
from loguru import logger

from ..core.errors import TaskInterrupted
from ..core.instances import task_managers
from ..core.redaction import redact_text
from ..core.status import TaskStatus
from ..middleware.context import context_of
from ..middleware.delivery import DeliveryMiddleware, Outcome
from ..middleware.ledger import LedgerWriter
from ..redis.scripts import Write
from .continuations import Continuations
from .engine import NOT_JSON, WORKFLOW_OPTION, advance, dumps, fail
from .state import JoinOutcome, StepError, join_write

if TYPE_CHECKING:
    from ..tasks.manager import TaskManager

#: Seconds between attempts to start a workflow's next step while Redis cannot be reached.
CONTINUE_PAUSE = 1.0
#: Attempts before the worker gives up on a continuation (the message is then redelivered).
CONTINUE_ATTEMPTS = 60


class WorkflowSteps(DeliveryMiddleware):
    """Carries each workflow step's result, or its error, to the steps that follow.

    Parameters:
      manager: the task manager whose broker this middleware runs on (default: the default one).
      ledger: the ledger middleware of the same stack, whose writes a join rides with.
    """

    def __init__(self, manager: TaskManager | None = None, *, ledger: LedgerWriter | None = None) -> None:
        self.manager = manager
        self.ledger = ledger
        self.continuations: Continuations | None = None

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        writer = self.ledger
        if writer is None or writer.store is None or writer.riders is None or not writer.riders.riding:
            return  # joins are then sent before the ack, on their own
        manager = self._manager()
        self.continuations = Continuations(manager, manager.settings.heartbeat_timeout)
        self.continuations.start()

    def _manager(self) -> TaskManager:
        """The manager that composed this middleware (the default one if none did)."""
        if self.manager is None:
            self.manager = task_managers.get()
        return self.manager

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.continuations is not None:
            self.continuations.stop()
            self.continuations = None

    def after_delivery(self, broker: dramatiq.Broker, message: MessageProxy, outcome: Outcome) -> None:
        context = context_of(message)
        step = message.options.get(WORKFLOW_OPTION)
        if outcome.skipped:
            status = context.skip_status
            if step and status in (TaskStatus.CANCELLED, TaskStatus.EXPIRED):
                self._fail(broker, message, step, status.value, status.value.capitalize(),
                           f"the step was {status.value}")  # fmt: skip
        elif step:
            self._step_processed(broker, message, step, outcome)
        context.workflow_done = True

    def _step_processed(
        self, broker: dramatiq.Broker, message: MessageProxy, step: dict[str, Any], outcome: Outcome
    ) -> None:
        """Start what follows a step that ran (or fail the workflow), as the module's text says."""
        result, exception = outcome.result, outcome.exception
        if exception is None:
            try:
                dumps(result)
            except NOT_JSON as exc:
                self._fail(
                    broker, message, step, "failure", "SerializationError", f"the result is not JSON: {exc}"
                )
                return
            frames = step["next"]
            if frames and "join" in frames[0] and self.continuations is not None:
                context_of(message).join = self._riding_join(frames[0], message.message_id, result)
            else:
                self._carry_on(broker, message, lambda manager: advance(manager, step["wf"], result, frames,
                                                                member_id=message.message_id))  # fmt: skip
        elif isinstance(exception, TaskInterrupted):
            self._fail(
                broker, message, step, TaskStatus.CANCELLED.value, "Cancelled", str(exception) or "cancelled"
            )
        elif message.failed:
            self._fail(
                broker,
                message,
                step,
                TaskStatus.FAILURE.value,
                type(exception).__name__,
                str(exception)[:2000],
            )

    def before_ack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        join = context_of(message).join
        if join is None:  # (every message is acked: nothing more on that path)
            return
        writer = self.ledger
        if writer is not None and writer.riders is not None:
            writer.riders.add(message.options.get("redis_message_id", message.message_id), join)

    def _riding_join(self, frame: dict[str, Any], member_id: str, result: Any) -> Write:
        """The member's join, to ride on its ack; a reply that fires the group goes to the thread."""
        continuations = self.continuations
        group_id = frame["join"]
        store = self.ledger.store if self.ledger is not None else None
        assert store is not None  # a join rides on an ack only where continuations run: task state kept

        def joined(reply: Any) -> None:
            outcome = JoinOutcome.from_reply(reply)
            if outcome.action == "fire" and continuations is not None:
                continuations.fired(group_id, outcome, member_id)

        write = join_write(store.keys, group_id, frame["i"], member_id, value=result)
        write.on_reply = joined
        return write

    def after_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        step = message.options.get(WORKFLOW_OPTION)
        if step and not context_of(message).workflow_done:
            # Nacked without being processed: an unknown task, or max_age reached.
            self._fail(
                broker, message, step, TaskStatus.DEAD.value, "DeadLettered", "the step was dead-lettered"
            )

    def _fail(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        step: dict[str, Any],
        status: str,
        error_type: str,
        text: str,
    ) -> None:
        error = StepError(message.message_id, message.actor_name, status, error_type, text)
        self._carry_on(broker, message, lambda manager: fail(manager, step["wf"], error, step["next"]))

    def _carry_on(self, broker: dramatiq.Broker, message: MessageProxy, action: Any) -> None:
        """Run ``action``; wait out a Redis outage (Dramatiq would ack the message all the same)."""
        manager = self._manager()
        for attempt in range(1, CONTINUE_ATTEMPTS + 1):
            try:
                _send_final_write(manager, message)
                action(manager)
                return
            except (redis.ConnectionError, redis.TimeoutError, BrokerConnectionError) as exc:
                if attempt == CONTINUE_ATTEMPTS:
                    raise
                logger.warning("could not carry workflow step {} on, trying again in {:g} s: {}",
                               message.message_id, CONTINUE_PAUSE, redact_text(str(exc)))  # fmt: skip
                time.sleep(CONTINUE_PAUSE)


def _send_final_write(manager: Any, message: MessageProxy) -> None:
    """Send the step's own final ledger write now (it would have ridden on the ack)."""
    run = context_of(message).run
    if run is not None and run.final is not None and not run.final_sent:
        run.final.run(manager.store.client)
        run.final_sent = True
