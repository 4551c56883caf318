"""``aum send``: input checked before anything is sent, the message lands in Redis, failures are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from aury_tasks.core import keys

from .conftest import EXAMPLE_MODULES, Invoke, RunAum

MODULES = ["--modules", str(EXAMPLE_MODULES)]


def queued(client: redis.Redis, queue_name: str) -> list[dict]:
    """The messages waiting in a queue of Dramatiq's Redis broker, decoded, oldest first."""
    ids = client.lrange(f"{keys.DEFAULT.prefix}:{queue_name}", 0, -1)
    bodies = client.hmget(f"{keys.DEFAULT.prefix}:{queue_name}.msgs", ids) if ids else []
    return [json.loads(body) for body in bodies]


# Input errors: exit 2 before any module is imported or broker contacted


def test_an_unknown_task_exits_2_naming_it_with_a_suggestion(invoke: Invoke) -> None:
    # Given the example modules
    # When a misspelt task is sent
    result = invoke("send", "build_reprot", *MODULES)

    # Then aum exits 2, naming it and suggesting the close one
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "Error: unknown task 'build_reprot'; did you mean modules.reports.tasks.build_report?"
    )


def test_an_unknown_task_without_close_match_lists_the_known_ones(invoke: Invoke) -> None:
    result = invoke("send", "zzz", *MODULES)

    assert result.exit_code == 2
    assert "unknown task 'zzz'; known tasks: modules.emails.tasks.send_password_reset" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build_report", "[1,"], "Invalid value for ARGS_JSON: not valid JSON"),
        (["build_report", "'x'"], "Invalid value for ARGS_JSON: not valid JSON"),
        (["build_report", '{"day": "2026-01-01"}'], "Invalid value for ARGS_JSON: must be a JSON array"),
        (["build_report", '"2026-01-01"'], "Invalid value for ARGS_JSON: must be a JSON array"),
        (["build_report", "[]", "--kwargs", "{day:1}"], "Invalid value for --kwargs: not valid JSON"),
        (["build_report", "--kwargs", '["2026-01-01"]'], "Invalid value for --kwargs: must be a JSON object"),
        (["build_report", "--delay", "-1"], "Invalid value for '--delay'"),
    ],
)
def test_bad_arguments_exit_2(invoke: Invoke, tmp_path: Path, args: list[str], message: str) -> None:
    # Given an unreachable broker, which a bad command line must never get to
    env = {"TASK_BROKER_URL": "redis://127.0.0.1:1/0"}

    # When a task is sent with bad arguments
    result = invoke("send", *args, *MODULES, env=env)

    # Then aum exits 2 with click's usage error naming the argument
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert "unreachable" not in result.stderr


def test_bad_json_in_a_subprocess_exits_2_with_usage_and_no_traceback(run_aum: RunAum) -> None:
    completed = run_aum("send", "build_report", "not json", *MODULES)

    assert completed.returncode == 2
    assert (
        "Error: Invalid value for ARGS_JSON: not valid JSON (Expecting value at column 1)" in completed.stderr
    )
    assert "Traceback" not in completed.stderr


def test_a_broken_module_exits_3(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "mods" / "billing").mkdir(parents=True)
    (tmp_path / "mods" / "billing" / "tasks.py").write_text("raise ImportError('no stripe')\n")

    result = invoke("send", "charge", "--modules", "mods")

    assert result.exit_code == 3
    assert result.stderr.splitlines()[-1] == (
        "Error: task module mods.billing.tasks failed to import: ImportError: no stripe"
    )


# Sending to a real Redis


def test_sends_the_task_to_redis_and_prints_its_id(
    invoke: Invoke, redis_url: str, redis_client: redis.Redis
) -> None:
    # Given the test Redis as broker
    env = {"TASK_BROKER_URL": redis_url}

    # When a task is sent with positional and keyword arguments
    result = invoke("send", "build_report", '["2026-11-22"]', "--kwargs", '{"orders": 5}', *MODULES, env=env)

    # Then stdout is its id, and the message waits in the task's queue with those arguments
    assert result.exit_code == 0
    message_id = result.stdout.strip()
    assert result.stdout == f"{message_id}\n"
    (message,) = queued(redis_client, "reports")
    assert message["message_id"] == message_id
    assert message["actor_name"] == "modules.reports.tasks.build_report"
    assert message["queue_name"] == "reports"
    assert message["args"] == ["2026-11-22"]
    assert message["kwargs"] == {"orders": 5}
    assert "sent modules.reports.tasks.build_report to queue reports via redis at" in result.stderr


def test_sends_to_another_queue_with_a_delay(
    invoke: Invoke, redis_url: str, redis_client: redis.Redis
) -> None:
    # Given the test Redis as broker
    env = {"TASK_BROKER_URL": redis_url}

    # When a task is sent by its short name to another queue, delayed by a minute
    result = invoke(
        "send", "export_report", '["2026-11-22"]', "--queue", "urgent", "--delay", "60", *MODULES, env=env
    )

    # Then it waits in that queue's delay queue, and stderr says when it is due
    assert result.exit_code == 0
    assert queued(redis_client, "reports") == []
    assert queued(redis_client, "urgent") == []
    (message,) = queued(redis_client, "urgent.DQ")
    assert message["message_id"] == result.stdout.strip()
    assert message["actor_name"] == "modules.reports.tasks.export_report"
    assert "to queue urgent, due " in result.stderr


def test_sends_to_redis_in_a_subprocess(run_aum: RunAum, redis_url: str, redis_client: redis.Redis) -> None:
    # Given the test Redis as broker
    # When the real aum sends a task
    completed = run_aum("send", "send_welcome_email", '["42"]', *MODULES, env={"TASK_BROKER_URL": redis_url})

    # Then stdout is only the id of the message now in Redis
    assert completed.returncode == 0
    (message,) = queued(redis_client, "emails")
    assert completed.stdout == f"{message['message_id']}\n"
    assert message["args"] == ["42"]


def test_a_message_over_the_size_limit_exits_2_and_sends_nothing(
    run_aum: RunAum, redis_url: str, redis_client: redis.Redis
) -> None:
    # Given a limit of 2,000 bytes
    env = {"TASK_BROKER_URL": redis_url, "TASK_MAX_MESSAGE_BYTES": "2000"}

    # When the real aum sends 3,000 bytes of arguments
    completed = run_aum("send", "send_welcome_email", json.dumps(["4" * 3000]), *MODULES, env=env)

    # Then it exits 2 with one line, and nothing is in Redis
    assert completed.returncode == 2
    assert completed.stderr.splitlines()[-1].startswith(
        "Error: message of modules.emails.tasks.send_welcome_email is 3,"
    )
    assert "over TASK_MAX_MESSAGE_BYTES (2,000)" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert queued(redis_client, "emails") == []


def test_the_broker_url_can_come_from_an_env_file(
    invoke: Invoke, tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    # Given the test Redis named only in a settings file
    (tmp_path / "staging.env").write_text(f"TASK_BROKER_URL={redis_url}\n")

    # When a task is sent with --env-file
    result = invoke("--env-file", "staging.env", "send", "build_report", '["2026-11-22"]', *MODULES)

    # Then the message went to that broker
    assert result.exit_code == 0
    (message,) = queued(redis_client, "reports")
    assert message["message_id"] == result.stdout.strip()


def test_memory_broker_sends_without_a_server(invoke: Invoke) -> None:
    result = invoke("send", "build_report", '["2026-11-22"]', *MODULES, env={"TASK_BROKER_URL": "memory://"})

    assert result.exit_code == 0
    assert "via memory at memory://" in result.stderr


# An unreachable broker: exit 4, one line, no password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0"),
        ("redis://:hunter2@127.0.0.1:1/0", "redis://:***@127.0.0.1:1/0"),
        ("redis://admin:hunter2@127.0.0.1:1/0", "redis://admin:***@127.0.0.1:1/0"),
    ],
)
def test_an_unreachable_broker_exits_4(invoke: Invoke, url: str, shown: str) -> None:
    # Given a broker nobody listens on
    # When a task is sent to it
    result = invoke("send", "build_report", '["2026-11-22"]', *MODULES, env={"TASK_BROKER_URL": url})

    # Then aum exits 4 with one line naming the task and the masked URL
    assert result.exit_code == 4
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: cannot send modules.reports.tasks.build_report: broker {shown} unreachable "
        "(Error 111 connecting to 127.0.0.1:1. Connection refused.)"
    ]
    assert "hunter2" not in result.output


def test_an_unreachable_broker_in_a_subprocess_is_one_line_without_password(run_aum: RunAum) -> None:
    # Given a password-protected broker nobody listens on
    env = {"TASK_BROKER_URL": "redis://:hunter2@127.0.0.1:1/0"}

    # When the real aum sends a task to it
    completed = run_aum("send", "build_report", '["2026-11-22"]', *MODULES, env=env)

    # Then it exits 4, stderr is one line without traceback or password
    assert completed.returncode == 4
    assert completed.stdout == ""
    (line,) = completed.stderr.splitlines()
    assert line.startswith(
        "Error: cannot send modules.reports.tasks.build_report: broker redis://:***@127.0.0.1:1/0"
    )
    assert "Traceback" not in completed.stderr
    assert "hunter2" not in completed.stderr


def test_an_unreachable_rabbitmq_exits_4_without_password(invoke: Invoke) -> None:
    pytest.importorskip("pika", reason="pika is not installed (pip install 'aury-tasks[rabbitmq]')")
    # Given a RabbitMQ URL with a password where nobody listens
    env = {"TASK_BROKER_URL": "amqp://admin:hunter2@127.0.0.1:1/"}

    # When a task is sent to it
    result = invoke("send", "build_report", '["2026-11-22"]', *MODULES, env=env)

    # Then aum exits 4, its error line names the masked URL, and the password is nowhere
    assert result.exit_code == 4
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith(
        "Error: cannot send modules.reports.tasks.build_report: "
        "broker amqp://admin:***@127.0.0.1:1/ unreachable"
    )
    assert "hunter2" not in result.output
