"""``SchedulerManager.get_instance`` / ``reset_instance``: one scheduler per TaskManager name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aury_tasks import SchedulerManager, TaskManager


@pytest.fixture(autouse=True)
def _no_schedulers() -> Iterator[None]:
    SchedulerManager.reset_instance()
    yield
    SchedulerManager.reset_instance()


def test_each_name_has_one_scheduler_that_sends_through_its_task_manager() -> None:
    # Given the default scheduler and a named one
    default = SchedulerManager.get_instance()
    billing = SchedulerManager.get_instance("billing")

    # Then each is the same object on every call, and sends through the TaskManager of its name
    assert SchedulerManager.get_instance() is default
    assert SchedulerManager.get_instance("billing") is billing
    assert billing is not default
    assert billing.task_manager is TaskManager.get_instance("billing")


def test_reset_instance_forgets_one_scheduler_or_all() -> None:
    # Given two schedulers
    default = SchedulerManager.get_instance()
    billing = SchedulerManager.get_instance("billing")

    # When only the named one is reset, then the other is kept
    SchedulerManager.reset_instance("billing")
    assert SchedulerManager.get_instance("billing") is not billing
    assert SchedulerManager.get_instance() is default

    # When all are reset, then every name gets a fresh one
    SchedulerManager.reset_instance()
    assert SchedulerManager.get_instance() is not default
