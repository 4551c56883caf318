"""The worker side of workflows: when a step ends, start what follows (before its ack).

Placed before the ledger middleware (and so before Retries): Dramatiq runs after-hooks in
reverse, so its ``after_process_message`` runs once Retries has decided whether a failure is
final and the ledger has made the step's final write. That write is sent first, so a step's
record has ended before anything that follows it starts (or the workflow ends); it then no
longer rides on the ack.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware import Middleware
from loguru import logger

from ..errors import TaskInterrupted
from ..settings import redact_text
from ..status import TaskStatus
from .engine import NOT_JSON, WORKFLOW_OPTION, advance, dumps, fail
from .state import StepError

#: Seconds between attempts to start a workflow's next step while Redis cannot be reached.
CONTINUE_PAUSE = 1.0
#: Attempts before the worker gives up on a continuation (the message is then redelivered).
CONTINUE_ATTEMPTS = 60


class WorkflowSteps(Middleware):
    """Carries each workflow step's result, or its error, to the steps that follow."""

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        step = message.options.get(WORKFLOW_OPTION)
        if not step:
            return
        if exception is None:
            try:
                dumps(result)
            except NOT_JSON as exc:
                self._fail(
                    broker, message, step, "failure", "SerializationError", f"the result is not JSON: {exc}"
                )
                return
            self._carry_on(broker, message, lambda manager: advance(manager, step["wf"], result, step["next"],
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
        message._aury_workflow_done = True  # type: ignore[attr-defined]

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        step = message.options.get(WORKFLOW_OPTION)
        status = getattr(message, "_aury_skip_status", None)
        if step and status in (TaskStatus.CANCELLED, TaskStatus.EXPIRED):
            self._fail(
                broker, message, step, status.value, status.value.capitalize(), f"the step was {status.value}"
            )
        message._aury_workflow_done = True  # type: ignore[attr-defined]

    def after_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        step = message.options.get(WORKFLOW_OPTION)
        if step and not getattr(message, "_aury_workflow_done", False):
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
        manager = _manager_of(broker)
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


def _manager_of(broker: dramatiq.Broker) -> Any:
    """The task manager that built ``broker`` (the default one if none did)."""
    from ..manager import TaskManager

    for manager in list(TaskManager._instances.values()):
        if manager._broker is broker:
            return manager
    return TaskManager.get_instance()


def _send_final_write(manager: Any, message: MessageProxy) -> None:
    """Send the step's own final ledger write now (it would have ridden on the ack)."""
    run = getattr(message, "_aury_run", None)
    if run is not None and run.final is not None and not run.final_sent:
        run.final.run(manager.store.client)
        run.final_sent = True
