"""TaskManager: one instance per name, and finding tasks by name."""

from __future__ import annotations

import pytest

from aury_tasks import TaskManager, TaskNotFound


def test_get_instance_returns_the_same_object() -> None:
    # Given / When the default instance is asked for twice
    first = TaskManager.get_instance()
    second = TaskManager.get_instance()

    # Then it is the same manager, called "default"
    assert first is second
    assert first.name == "default"
    assert TaskManager.get_instance("default") is first


def test_named_instances_are_separate() -> None:
    # Given the default manager and a named one
    default = TaskManager.get_instance()
    analytics = TaskManager.get_instance("analytics")

    # When a task is declared on the named one
    @analytics.conditional_task
    def crunch() -> None: ...

    # Then they are different managers with their own registries
    assert analytics is not default
    assert analytics.name == "analytics"
    assert TaskManager.get_instance("analytics") is analytics
    assert crunch.name in analytics.tasks
    assert default.tasks == {}


def test_reset_instance_forgets_and_closes_it() -> None:
    # Given an initialized named instance and the default one
    billing = TaskManager.get_instance("billing")
    billing.initialize(broker_url="memory://")
    default = TaskManager.get_instance()

    # When only the named one is reset
    TaskManager.reset_instance("billing")

    # Then it was closed, the next get_instance builds a fresh one, and the default one is kept
    assert not billing.is_initialized
    assert TaskManager.get_instance("billing") is not billing
    assert TaskManager.get_instance() is default


def test_reset_instance_without_a_name_forgets_all() -> None:
    default = TaskManager.get_instance()
    other = TaskManager.get_instance("other")

    TaskManager.reset_instance()

    assert TaskManager.get_instance() is not default
    assert TaskManager.get_instance("other") is not other


def test_reset_of_an_unknown_name_is_harmless() -> None:
    TaskManager.reset_instance("never-created")


def test_tasks_is_a_copy() -> None:
    tm = TaskManager.get_instance()

    @tm.conditional_task
    def job() -> None: ...

    tm.tasks.clear()
    assert job.name in tm.tasks


@pytest.fixture
def registry() -> TaskManager:
    """A manager with tasks in two modules, one short name shared by both."""
    tm = TaskManager.get_instance()
    for name in [
        "modules.emails.tasks.send_welcome_email",
        "modules.emails.tasks.notify",
        "modules.reports.tasks.build_report",
        "modules.reports.tasks.notify",
    ]:

        def fn() -> None: ...

        fn.__qualname__ = name  # a distinct origin for each, so the names do not clash
        tm.conditional_task(actor_name=name)(fn)
    return tm


def test_get_task_by_full_name(registry: TaskManager) -> None:
    task = registry.get_task("modules.reports.tasks.build_report")
    assert task.name == "modules.reports.tasks.build_report"


def test_get_task_by_unambiguous_short_name(registry: TaskManager) -> None:
    # Given tasks whose last name part is unique
    # When one is asked for by its function name
    # Then it is found
    assert registry.get_task("build_report").name == "modules.reports.tasks.build_report"
    assert registry.get_task("send_welcome_email").name == "modules.emails.tasks.send_welcome_email"


def test_an_ambiguous_short_name_lists_the_candidates(registry: TaskManager) -> None:
    # Given two tasks whose function is called notify
    # When notify is asked for
    # Then the error names both
    with pytest.raises(TaskNotFound) as caught:
        registry.get_task("notify")
    message = str(caught.value)
    assert "ambiguous" in message
    assert "modules.emails.tasks.notify" in message
    assert "modules.reports.tasks.notify" in message


@pytest.mark.parametrize(
    ("asked", "suggested"),
    [
        ("modules.reports.tasks.build_reprt", "modules.reports.tasks.build_report"),
        ("build_reprot", "modules.reports.tasks.build_report"),
        ("send_welcome_mail", "modules.emails.tasks.send_welcome_email"),
    ],
)
def test_an_unknown_name_suggests_close_matches(registry: TaskManager, asked: str, suggested: str) -> None:
    # Given a registry of tasks
    # When a misspelt name is asked for, in full or short
    with pytest.raises(TaskNotFound) as caught:
        registry.get_task(asked)

    # Then the error names it and suggests the close match
    message = str(caught.value)
    assert message.startswith(f"unknown task {asked!r}; did you mean ")
    assert suggested in message
    assert isinstance(caught.value, LookupError)
    assert caught.value.exit_code == 2


def test_an_unknown_name_without_close_match_lists_the_tasks(registry: TaskManager) -> None:
    with pytest.raises(TaskNotFound, match=r"unknown task 'zzz'; known tasks: modules\.emails"):
        registry.get_task("zzz")


def test_an_unknown_name_with_no_tasks_says_so() -> None:
    with pytest.raises(TaskNotFound, match="no tasks are registered"):
        TaskManager.get_instance().get_task("anything")
