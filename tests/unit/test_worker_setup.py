"""The worker's set-up: one typed object ``aum worker`` hands its processes in one variable."""

from __future__ import annotations

import json
import os

import click
import pytest
from click.testing import CliRunner

from aury_tasks import ConfigError, TaskSettings
from aury_tasks.cli.worker import WorkerOptions, worker_options
from aury_tasks.worker.setup import SETUP_ENV, SETUP_VERSION, WorkerSetup


@pytest.fixture
def setup() -> WorkerSetup:
    settings = TaskSettings.load(_env_file=None, broker_url="redis://:hunter2@cache:6379/0", timeout=12.5)
    return WorkerSetup(
        settings=settings.snapshot(),
        queues=("cpu", "default"),
        queue_limits={"cpu": (2, 8)},
        scheduler_lease_ttl=5.0,
    )


def test_a_setup_goes_through_json_whole(setup: WorkerSetup) -> None:
    # When a set-up goes through JSON, as to a worker process
    read = WorkerSetup.from_json(setup.to_json())

    # Then it is the same, settings snapshot included, and says its version
    assert read == setup
    assert read.settings.broker_url_value == "redis://:hunter2@cache:6379/0"
    assert read.settings.timeout == 12.5
    assert read.queue_limits == {"cpu": (2, 8)}
    assert json.loads(setup.to_json())["version"] == SETUP_VERSION


def test_a_process_takes_the_setup_out_of_its_environment(
    setup: WorkerSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a set-up exported, as aum worker does before it becomes the supervisor
    monkeypatch.delenv(SETUP_ENV, raising=False)
    setup.export()

    # When a process takes it
    taken = WorkerSetup.take()

    # Then it has the set-up, and the variable is gone (the tasks' subprocesses do not inherit it)
    assert taken == setup
    assert SETUP_ENV not in os.environ


def test_no_setup_is_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SETUP_ENV, raising=False)

    with pytest.raises(ConfigError, match=f"no worker set-up in {SETUP_ENV}: worker processes are"):
        WorkerSetup.take()


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"version": 1}', '{"version": 1, "settings": {}, "queues": [], "queue_limits": {}}'],
    ids=["not-json", "not-an-object", "fields-missing", "settings-incomplete"],
)
def test_a_malformed_setup_is_one_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid worker set-up in {SETUP_ENV}: "):
        WorkerSetup.from_json(text)


def test_a_setup_of_another_version_is_refused(setup: WorkerSetup) -> None:
    # Given a set-up written by another version of aury-tasks
    other = json.loads(setup.to_json()) | {"version": SETUP_VERSION + 1}

    # When it is read, then it is refused, saying which version was found
    with pytest.raises(ConfigError, match=f"version {SETUP_VERSION + 1}, this aury-tasks reads version"):
        WorkerSetup.from_json(json.dumps(other))


def test_worker_options_reach_the_command_as_one_object() -> None:
    # Given a command with the shared worker options
    seen: list[WorkerOptions] = []

    @click.command()
    @worker_options
    @click.option("--extra", default="x")
    def command(options: WorkerOptions, extra: str) -> None:
        seen.append(options)

    # When it is run with some of them
    given = ["-q", "cpu:2", "-q", "io", "-c", "3", "--prefetch", "7", "--extra", "y"]
    result = CliRunner().invoke(command, given)

    # Then it gets them as one WorkerOptions, its own options beside it
    assert result.exit_code == 0, result.output
    assert seen == [WorkerOptions(queues=("cpu:2", "io"), concurrency=3, prefetch=7)]
