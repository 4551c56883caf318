"""``@tm.conditional_task``: declaring tasks, their names and the Dramatiq options they map to."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from aury_tasks import PermanentError, Task, TaskManager, TaskOptionError
from aury_tasks.core.errors import TaskInterrupted


def test_without_parentheses_on_def() -> None:
    # Given the default manager
    tm = TaskManager.get_instance()

    # When a function is decorated without parentheses
    @tm.conditional_task
    def add(x: int, y: int) -> int:
        """Add two numbers."""
        return x + y

    # Then it is a task that keeps the function's name and docstring and stays callable
    assert isinstance(add, Task)
    assert add.__name__ == "add"
    assert add.__doc__ == "Add two numbers."
    assert add.__wrapped__ is add.fn
    assert not add.is_async
    assert add(2, 3) == 5
    assert tm.tasks == {add.name: add}


def test_with_parentheses_on_async_def() -> None:
    # Given the default manager
    tm = TaskManager.get_instance()

    # When an async function is decorated with options
    @tm.conditional_task(queue_name="emails", max_retries=5)
    async def greet(name: str) -> str:
        await asyncio.sleep(0)
        return f"hello {name}"

    # Then calling it directly returns a coroutine that gives the function's value
    assert isinstance(greet, Task)
    assert greet.is_async
    coroutine = greet("ada")
    assert inspect.iscoroutine(coroutine)
    assert asyncio.run(coroutine) == "hello ada"
    assert greet.queue_name == "emails"
    assert greet.max_retries == 5


def test_empty_parentheses_work_too() -> None:
    tm = TaskManager.get_instance()

    @tm.conditional_task()
    def noop() -> None: ...

    assert isinstance(noop, Task)
    assert noop() is None


def test_default_name_is_module_and_qualname() -> None:
    # Given the default manager
    tm = TaskManager.get_instance()

    # When a task is declared without actor_name
    @tm.conditional_task
    def compute() -> int:
        return 1

    # Then its name is <module>.<qualname> of the function
    assert compute.name == f"{__name__}.{compute.fn.__qualname__}"
    assert compute.name.endswith("test_default_name_is_module_and_qualname.<locals>.compute")
    assert tm.get_task(compute.name) is compute


def test_actor_name_overrides_the_name() -> None:
    # Given the default manager
    tm = TaskManager.get_instance()

    # When a task is declared with actor_name
    @tm.conditional_task(actor_name="billing.charge")
    def charge() -> None: ...

    # Then it is registered under that name only
    assert charge.name == "billing.charge"
    assert list(tm.tasks) == ["billing.charge"]


def test_defaults_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given settings for the defaults
    monkeypatch.setenv("TASK_QUEUE_NAME", "bulk")
    monkeypatch.setenv("TASK_MAX_RETRIES", "7")
    monkeypatch.setenv("TASK_TIMEOUT", "12")
    monkeypatch.setenv("TASK_RETRY_DELAY", "4")
    monkeypatch.setenv("TASK_MAX_RETRY_DELAY", "40")
    tm = TaskManager.get_instance()

    # When a task names none of these options
    @tm.conditional_task
    def plain() -> None: ...

    # Then the settings give them
    assert plain.queue_name == "bulk"
    assert plain.options["max_retries"] == 7
    assert plain.options["time_limit"] == 12_000
    assert plain.options["min_backoff"] == 4_000
    assert plain.options["max_backoff"] == 40_000


def test_options_map_to_dramatiq_actor_options() -> None:
    # Given the default manager
    tm = TaskManager.get_instance()

    # When a task is declared with every option aury-tasks handles, plus Dramatiq ones
    @tm.conditional_task(
        queue_name="reports",
        max_retries=4,
        timeout=2.5,
        retry_delay=0.25,
        max_retry_delay=90,
        priority=9,
        max_age=60_000,
        throws=ValueError,
    )
    def build() -> None: ...

    # Then they become Dramatiq actor options, in milliseconds
    assert build.queue_name == "reports"
    assert build.priority == 9
    assert build.options == {
        "max_retries": 4,
        "time_limit": 2500,
        "min_backoff": 250,
        "max_backoff": 90_000,
        "throws": (PermanentError, TaskInterrupted, ValueError),
        "max_age": 60_000,
    }
    assert build.timeout == 2.5
    assert build.max_retries == 4


def test_permanent_error_is_always_thrown() -> None:
    # Given the default manager
    tm = TaskManager.get_instance()

    # When tasks are declared without throws and with a tuple of them
    @tm.conditional_task
    def plain() -> None: ...

    @tm.conditional_task(throws=(KeyError, LookupError))
    def picky() -> None: ...

    # Then PermanentError is among the exceptions that are not retried
    assert plain.options["throws"] == (PermanentError, TaskInterrupted)
    assert picky.options["throws"] == (PermanentError, TaskInterrupted, KeyError, LookupError)


def test_worker_mode_actor_gets_the_options(worker_tm: TaskManager) -> None:
    # Given a manager in worker mode
    # When a task is declared with options
    @worker_tm.conditional_task(queue_name="reports", max_retries=2, timeout=3, priority=5)
    def build() -> None: ...

    # Then the Dramatiq actor carries them
    assert build.actor is not None
    assert build.actor.actor_name == build.name
    assert build.actor.queue_name == "reports"
    assert build.actor.priority == -5  # Dramatiq: lower runs first
    assert build.actor.options["max_retries"] == 2
    assert build.actor.options["time_limit"] == 3000
    assert build.actor.options["throws"] == (PermanentError, TaskInterrupted)


@pytest.mark.parametrize("option", ["max_retrys", "timeout_ms", "queue"])
def test_an_unknown_option_fails_at_decoration(option: str) -> None:
    # Given the default manager
    tm = TaskManager.get_instance()

    # When a task is declared with an option nobody knows
    # Then the decoration itself fails, naming the task and the option
    with pytest.raises(TaskOptionError, match=rf"typo: unknown task option\(s\) {option}"):

        @tm.conditional_task(actor_name="typo", **{option: 1})
        def typo() -> None: ...

    assert tm.tasks == {}


@pytest.mark.parametrize("queue_name", ["bad name", "1starts-with-digit", "emails!", "a/b"])
def test_an_invalid_queue_name_fails_at_decoration(queue_name: str) -> None:
    # Given the default manager
    tm = TaskManager.get_instance()

    # When / Then a task with an invalid queue name is refused, naming the queue
    with pytest.raises(TaskOptionError, match="invalid queue name") as caught:

        @tm.conditional_task(queue_name=queue_name)
        def send() -> None: ...

    assert repr(queue_name) in str(caught.value)
    assert isinstance(caught.value, TypeError)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_retries": -1}, "max_retries must be 0 or more"),
        ({"timeout": 0}, "must be greater than 0"),
        ({"retry_delay": -1}, "must be greater than 0"),
        ({"max_retry_delay": 0}, "must be greater than 0"),
        ({"retry_on": ValueError("not a type")}, "retry_on takes exception types"),
        ({"retry_on": (ConnectionError, str)}, "retry_on takes exception types"),
    ],
)
def test_invalid_option_values_fail_at_decoration(options: dict, message: str) -> None:
    tm = TaskManager.get_instance()

    with pytest.raises(TaskOptionError, match=message):

        @tm.conditional_task(**options)
        def task() -> None: ...


def test_only_functions_can_be_decorated() -> None:
    tm = TaskManager.get_instance()

    with pytest.raises(TaskOptionError, match="decorates a function"):
        tm.conditional_task(42)  # type: ignore[call-overload]


def test_a_name_taken_by_another_function_is_refused() -> None:
    # Given a task registered under a name
    tm = TaskManager.get_instance()

    @tm.conditional_task(actor_name="jobs.cleanup")
    def cleanup() -> None: ...

    # When a different function claims the same name
    # Then the declaration fails, saying where the first one lives
    with pytest.raises(TaskOptionError, match=r"'jobs.cleanup' is already taken by .*cleanup \(.*\.py:\d+\)"):

        @tm.conditional_task(actor_name="jobs.cleanup")
        def other_cleanup() -> None: ...

    assert tm.get_task("jobs.cleanup") is cleanup


def test_declaring_the_same_function_again_replaces_it() -> None:
    # Given a task (as when its module is imported a second time)
    tm = TaskManager.get_instance()

    def cleanup() -> None: ...

    first = tm.conditional_task(cleanup)

    # When the same function is declared again, with other options
    second = tm.conditional_task(queue_name="later")(cleanup)

    # Then the newer declaration wins, without an error
    assert tm.get_task(first.name) is second
    assert second.queue_name == "later"


def test_retry_on_retries_only_those_types_within_max_retries() -> None:
    # Given a task retried on connection errors only, at most twice
    tm = TaskManager.get_instance()

    @tm.conditional_task(max_retries=2, retry_on=(ConnectionError, TimeoutError))
    def fetch() -> None: ...

    retry_when = fetch.options["retry_when"]

    # When / Then a listed error (or a subclass) is retried while retries remain
    assert retry_when(0, ConnectionError("flaky"))
    assert retry_when(1, ConnectionRefusedError("flaky"))
    assert retry_when(1, TimeoutError("slow"))
    assert not retry_when(2, ConnectionError("flaky"))
    # and any other error is not retried at all
    assert not retry_when(0, ValueError("bad input"))
    assert not retry_when(0, PermanentError("never"))


def test_retry_on_takes_a_single_type() -> None:
    tm = TaskManager.get_instance()

    @tm.conditional_task(max_retries=1, retry_on=OSError)
    def fetch() -> None: ...

    retry_when = fetch.options["retry_when"]
    assert retry_when(0, FileNotFoundError())
    assert not retry_when(1, FileNotFoundError())
    assert not retry_when(0, RuntimeError())


def test_without_retry_on_no_retry_when_is_set() -> None:
    tm = TaskManager.get_instance()

    @tm.conditional_task
    def plain() -> None: ...

    assert "retry_when" not in plain.options


def test_the_declared_keywords_are_exactly_the_options_accepted() -> None:
    # Given the keywords the decorator's signature is made of (what a type checker knows)
    from aury_tasks.config.settings import get_settings
    from aury_tasks.tasks.options import OWN_OPTIONS, TaskOptionArgs, dramatiq_actor_options

    declared = set(TaskOptionArgs.__optional_keys__)

    # When they are compared with what a declaration accepts at run time
    accepted = OWN_OPTIONS | dramatiq_actor_options(get_settings())

    # Then they are the same: a type checker refuses no option that works, and accepts none that fails
    assert declared == accepted
    assert not TaskOptionArgs.__required_keys__
