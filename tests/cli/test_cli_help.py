"""``aum --version`` and ``--help``: always work, and never show a password from the settings."""

from __future__ import annotations

import click
import pytest

from aury_tasks import __version__
from aury_tasks.cli import main

from .conftest import Invoke, RunAum

COMMANDS = [
    [], ["run"], ["worker"], ["scheduler"], ["tasks"], ["send"], ["status"], ["result"], ["cancel"],
    ["retry"], ["list"], ["stats"], ["queues"], ["cleanup"], ["dlq"],
    *[["dlq", sub] for sub in ("list", "show", "requeue", "purge")],
    ["schedule"],
    *[["schedule", sub]
      for sub in ("list", "show", "add", "update", "pause", "resume", "run", "remove", "validate")],
    ["top"], ["serve"], ["doctor"],
    ["alerts"], *[["alerts", sub] for sub in ("list", "add", "remove", "test")],
]  # fmt: skip
SECRET_URL = "redis://:secret@h:1/0"


def test_version(invoke: Invoke) -> None:
    # Given / When aum is asked for its version
    result = invoke("--version")

    # Then it prints it and exits 0
    assert result.exit_code == 0
    assert result.stdout == f"aum (aury-tasks), version {__version__}\n"


def test_version_in_a_subprocess(run_aum: RunAum) -> None:
    completed = run_aum("-V")

    assert completed.returncode == 0
    assert completed.stdout.strip() == f"aum (aury-tasks), version {__version__}"
    assert completed.stderr == ""


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "aum")
def test_help_of_every_command_hides_the_broker_password(invoke: Invoke, command: list[str]) -> None:
    # Given a broker URL with a password in the environment
    env = {"TASK_BROKER_URL": SECRET_URL}

    # When the command's help is asked for, with --help and -h
    long_help = invoke(*command, "--help", env=env)
    short_help = invoke(*command, "-h", env=env)

    # Then it is shown, exit 0, and the password is not in it
    assert long_help.exit_code == 0
    assert long_help.stdout.startswith(f"Usage: aum {' '.join(command)}".rstrip())
    assert short_help.stdout == long_help.stdout
    assert "secret" not in long_help.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "aum")
def test_help_in_a_subprocess(run_aum: RunAum, command: list[str]) -> None:
    # Given a broker URL with a password, and a wrong setting (help must not read settings)
    env = {"TASK_BROKER_URL": SECRET_URL, "TASK_TIMEOUT": "abc"}

    # When the real aum is asked for help
    completed = run_aum(*command, "--help", env=env)

    # Then it prints the help, nothing on stderr, and no password
    assert completed.returncode == 0
    assert completed.stdout.startswith("Usage: aum")
    assert completed.stderr == ""
    assert "secret" not in completed.stdout


def test_main_help_lists_commands_and_exit_codes(invoke: Invoke) -> None:
    result = invoke("--help")

    for command in ("worker", "tasks", "send"):
        assert f"\n  {command} " in result.stdout
    assert "Exit codes:" in result.stdout
    assert "4 broker unreachable" in result.stdout


def test_no_command_shows_usage(invoke: Invoke) -> None:
    result = invoke()

    assert result.exit_code in (0, 2)  # click's choice for a group without a command
    assert "Usage: aum" in result.output


def test_an_unknown_command_exits_2(invoke: Invoke) -> None:
    result = invoke("wrker")

    assert result.exit_code == 2
    assert "No such command 'wrker'" in result.stderr


def test_every_command_is_in_the_help_tests() -> None:
    # Given every command and subcommand of aum
    def walk(group: click.Group, path: list[str]) -> list[list[str]]:
        found = [path]
        for name, command in group.commands.items():
            found += walk(command, [*path, name]) if isinstance(command, click.Group) else [[*path, name]]
        return found

    # Then each is checked by the help tests above
    assert sorted(walk(main, [])) == sorted(COMMANDS)
