"""Logging: passwords masked, JSON lines, stdlib loggers routed to loguru, task context on task logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable

import dramatiq
import pytest
from loguru import logger

from aury_tasks import TaskManager
from aury_tasks.config.logging import setup_logging

pytestmark = pytest.mark.usefixtures("restore_logging")


def test_a_password_in_a_log_line_is_masked() -> None:
    # Given logging set up to a stream
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)

    # When lines name URLs with passwords, in the message and in its arguments
    logger.info("connecting to redis://:hunter2@cache:6379/0")
    logger.info(
        "fallback {} then {url}", "amqp://guest:hunter3@rabbit:5672/", url="unix:///s.sock?password=hunter4"
    )

    # Then the passwords are masked and the rest of the URLs kept
    output = stream.getvalue()
    assert "hunter" not in output
    assert "connecting to redis://:***@cache:6379/0" in output
    assert "fallback amqp://guest:***@rabbit:5672/ then unix:///s.sock?password=***" in output


def test_a_password_in_a_logged_exception_is_masked() -> None:
    # Given logging set up to a stream
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)

    # When an exception naming a URL with a password is logged
    url = "redis://:" + "hunter2" + "@cache:6379/0"  # not in the source line the traceback shows
    try:
        raise RuntimeError(f"cannot reach {url}")
    except RuntimeError as exc:
        logger.exception("send failed")
        raised = exc

    # Then its traceback is shown with the password masked
    output = stream.getvalue()
    assert "Traceback" in output
    assert "RuntimeError: cannot reach redis://:***@cache:6379/0" in output
    assert "hunter2" not in output
    # ... and the exception itself, which the caller may still handle, is left as it was
    assert raised.args == (f"cannot reach {url}",)


def test_json_mode_writes_one_object_per_line() -> None:
    # Given JSON logging
    stream = io.StringIO()
    setup_logging("INFO", json=True, stream=stream)

    # When lines are logged, one with a password and one with an exception
    logger.info("first")
    logger.warning("second to redis://:hunter2@cache/0")
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("third")

    # Then each is one JSON object with its level and (masked) message
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    records = [json.loads(line)["record"] for line in lines]
    assert [r["message"] for r in records] == ["first", "second to redis://:***@cache/0", "third"]
    assert [r["level"]["name"] for r in records] == ["INFO", "WARNING", "ERROR"]
    assert records[2]["exception"]["type"] == "ValueError"
    assert "hunter2" not in stream.getvalue()


def test_the_level_filters_lines() -> None:
    # Given logging at WARNING
    stream = io.StringIO()
    setup_logging("WARNING", stream=stream)

    # When lines of several levels are logged, through loguru and the standard library
    logger.info("quiet")
    logger.warning("loud")
    logging.getLogger("dramatiq").info("quiet too")
    logging.getLogger("dramatiq").error("loud too")

    # Then only those at WARNING or above are written
    output = stream.getvalue()
    assert "quiet" not in output
    assert "loud" in output
    assert "loud too" in output


def test_stdlib_records_reach_loguru_with_their_logger_name() -> None:
    # Given logging set up
    stream = io.StringIO()
    setup_logging("DEBUG", stream=stream)

    # When Dramatiq's standard-library logger writes, with %-style arguments
    logging.getLogger("dramatiq.worker.Worker").warning(
        "worker %s restarted, broker %s", 3, "redis://:pw@h/0"
    )

    # Then the line comes out of loguru's sink, named after the logger, formatted and masked
    (line,) = stream.getvalue().splitlines()
    assert "WARNING" in line
    assert "dramatiq.worker.Worker - worker 3 restarted, broker redis://:***@h/0" in line


def test_pika_is_kept_at_warning_and_results_warning_is_dropped() -> None:
    # Given logging at DEBUG
    stream = io.StringIO()
    setup_logging("DEBUG", stream=stream)

    # When pika chatters and Dramatiq warns about the Results middleware
    logging.getLogger("pika.connection").info("socket chatter")
    logging.getLogger("dramatiq.actor").warning(
        "Actor 'x' returned a value that is not None, but you haven't added the Results middleware"
    )

    # Then neither is written
    assert stream.getvalue() == ""


def test_a_task_log_line_carries_its_task_context(
    worker_tm: TaskManager, stub_worker: Callable[[], dramatiq.Worker]
) -> None:
    # Given logging set up and a task that logs, running on a stub worker
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)

    @worker_tm.conditional_task(queue_name="jobs", actor_name="jobs.greet")
    def greet(name: str) -> None:
        logger.info("hello {}", name)

    worker = stub_worker()

    # When it runs
    handle = greet.send("ada")
    worker_tm.broker.join("jobs")
    worker.join()

    # Then its line names the task, its id and the attempt; lines outside a task do not
    logger.info("outside")
    lines = stream.getvalue().splitlines()
    (task_line,) = [line for line in lines if "hello ada" in line]
    assert f"[jobs.greet {handle.id} attempt 1]" in task_line
    (outside_line,) = [line for line in lines if "outside" in line]
    assert "attempt" not in outside_line
