"""What aury-tasks's middleware keep about one delivery of a message: one typed object.

A middleware that must remember something about the message it handles, from one hook to the
next (the ledger's run, a concurrency lease, a workflow join riding on the ack), keeps it in the
message's :class:`MessageContext`, reached with :func:`context_of`. Nothing else is put on
Dramatiq's message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dramatiq.broker import MessageProxy

from ..core.status import TaskStatus
from ..redis.scripts import Write

if TYPE_CHECKING:
    from .ledger import TaskRun

#: The attribute of a message proxy holding its context (set only by :func:`context_of`).
_CONTEXT_ATTRIBUTE = "aury_context"


@dataclass(slots=True)
class MessageContext:
    """What the middleware know about one delivery of a message, a field per concern.

    Where it lives: on the :class:`~dramatiq.broker.MessageProxy` of the delivery, whoever made
    it (the Redis consumer of :mod:`aury_tasks.broker.redis`, or Dramatiq's own for RabbitMQ, the
    in-memory broker and eager runs). Its lifetime is the delivery's: made by the first hook that
    asks for it (``before_process_message``), read until the message is acknowledged or rejected,
    and gone with the proxy. A redelivery, a retry or a deferred copy is another message with a
    context of its own.
    """

    #: The ledger's attempt of the task (:class:`~aury_tasks.middleware.ledger.LedgerWriter`).
    run: TaskRun | None = None
    #: Why the ledger skipped the delivery: cancelled or expired (``None``: not skipped by it).
    skip_status: TaskStatus | None = None
    #: The concurrency slot the run holds (:class:`~aury_tasks.middleware.flow_control.FlowControl`).
    lease: str | None = None
    #: Whether flow control deferred the delivery (a copy was sent for later).
    deferred: bool = False
    #: A workflow group member's join, to ride on the ack (:mod:`aury_tasks.workflows.middleware`).
    join: Write | None = None
    #: Whether the workflow middleware has dealt with the step's end (processed or skipped).
    workflow_done: bool = False


def context_of(message: MessageProxy) -> MessageContext:
    """The context of the delivery ``message`` (made empty on first use)."""
    attributes = vars(message)  # (not getattr: a proxy hands unknown names to its message)
    context: MessageContext | None = attributes.get(_CONTEXT_ATTRIBUTE)
    if context is None:
        context = attributes[_CONTEXT_ATTRIBUTE] = MessageContext()
    return context


def existing_context(message: object) -> MessageContext | None:
    """The context of ``message`` if a middleware made one, else ``None`` (also for what is not a
    message proxy)."""
    attributes = getattr(message, "__dict__", None)
    return attributes.get(_CONTEXT_ATTRIBUTE) if attributes is not None else None
