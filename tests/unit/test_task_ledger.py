"""TaskLedger: the documented tm. calls are delegations to tm.ledger, shown as the ledger's."""

from __future__ import annotations

import inspect

import pytest

from aury_tasks import TaskManager
from aury_tasks.tasks.delegation import Delegated, DelegatedProperty
from aury_tasks.tasks.ledger import TaskLedger

DELEGATED = sorted(name for name, member in vars(TaskManager).items() if isinstance(member, Delegated))


def test_every_public_ledger_member_is_on_the_manager() -> None:
    # Given the public members of TaskLedger
    public = {name for name in vars(TaskLedger) if not name.startswith("_")}

    # Then the manager delegates each of them (store as a property), and nothing else
    assert set(DELEGATED) | {"store"} == public
    assert isinstance(vars(TaskManager)["store"], DelegatedProperty)


@pytest.mark.parametrize("name", DELEGATED)
def test_a_delegated_member_shows_the_ledger_members_signature_and_docstring(name: str) -> None:
    # Given the member on the manager's class and on the ledger's
    on_manager, on_ledger = getattr(TaskManager, name), getattr(TaskLedger, name)

    # Then help() and inspect see the same signature, docstring and kind
    assert inspect.signature(on_manager) == inspect.signature(on_ledger)
    assert inspect.getdoc(on_manager) == inspect.getdoc(on_ledger) and inspect.getdoc(on_manager)
    assert inspect.iscoroutinefunction(on_manager) == inspect.iscoroutinefunction(on_ledger)


def test_a_delegated_call_is_the_ledgers_bound_method() -> None:
    # Given a manager
    tm = TaskManager("delegation")

    # When a ledger call is read from it
    cancel = tm.cancel

    # Then it is its ledger's method, and the store property is documented as the ledger's
    assert cancel == tm.ledger.cancel and tm.ledger.manager is tm
    assert inspect.getdoc(TaskManager.store) == inspect.getdoc(TaskLedger.store)


def test_calling_through_the_class_forwards_to_the_instances_ledger() -> None:
    # Given a manager whose ledger is replaced by a stand-in
    class StandIn:
        def workers(self) -> list[str]:
            return ["w1"]

    tm = TaskManager("class-call")
    tm.ledger = StandIn()  # type: ignore[assignment]

    # When a member is called on the class, with the manager as self
    workers = TaskManager.workers(tm)

    # Then the call reached that manager's ledger
    assert workers == ["w1"]  # type: ignore[comparison-overlap]
