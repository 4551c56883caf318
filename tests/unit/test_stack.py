"""The middleware stack: composed in one place, each middleware handed the peers it works with."""

from __future__ import annotations

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from aury_tasks import TaskManager
from aury_tasks.middleware.flow_control import FlowControl
from aury_tasks.middleware.ledger import LedgerWriter
from aury_tasks.tasks.stack import compose_middleware, ledger_writer
from aury_tasks.workflows.middleware import WorkflowSteps


def test_the_stack_hands_each_middleware_its_peers(memory_tm: TaskManager) -> None:
    # Given the stack composed for a manager
    stack = compose_middleware(memory_tm.settings, memory_tm)

    # Then flow control and the workflow steps work with the ledger middleware of that stack
    assert [m for m in stack.middleware if isinstance(m, LedgerWriter)] == [stack.ledger]
    assert stack.flow_control in stack.middleware and stack.workflows in stack.middleware
    assert isinstance(stack.flow_control, FlowControl) and stack.flow_control.ledger is stack.ledger
    assert isinstance(stack.workflows, WorkflowSteps) and stack.workflows.ledger is stack.ledger
    assert stack.workflows.manager is memory_tm


def test_ledger_writer_is_the_one_build_broker_composed(memory_tm: TaskManager) -> None:
    # Given the broker a manager built, and one built by hand with a ledger middleware of its own
    broker: dramatiq.Broker = memory_tm.broker
    by_hand = StubBroker(middleware=[LedgerWriter()])

    # Then the first's ledger middleware is found without looking through its middleware
    writer = ledger_writer(broker)
    assert writer in broker.middleware
    with pytest.raises(LookupError):
        ledger_writer(by_hand)
