"""The brokers the integration tests run on: the embedded Redis, and the RabbitMQ of this machine.

A test marked :data:`on_both_brokers` runs twice, with ``broker_url`` (``tests/conftest.py``)
the test Redis (id ``redis``) and then ``amqp://guest:guest@127.0.0.1:5672`` (id ``rabbitmq``),
the ledger kept in the test Redis (``TASK_RESULT_BACKEND_URL``) on RabbitMQ. The RabbitMQ is
shared and persistent: each RabbitMQ test gets queue names of its own (the fixture modules add
``AURY_TEST_QUEUE_SUFFIX`` to theirs) and deletes them, with their delay and dead-letter queues,
after its workers are stopped.

Where no RabbitMQ answers, the ``rabbitmq`` runs skip, saying why; with
``AURY_TESTS_REQUIRE_RABBITMQ=1`` (CI: ``.ci/run``) they fail instead. With
``AURY_TESTS_RABBITMQ_QUEUE_TYPE=quorum`` the ``rabbitmq`` runs use quorum queues
(``?queue_type=quorum``) instead of classic ones.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable

import pytest

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672"
#: The variable the fixture modules add to their queue names.
QUEUE_SUFFIX_VARIABLE = "AURY_TEST_QUEUE_SUFFIX"
#: Set to 1 where a RabbitMQ must answer (CI): its tests fail rather than skip.
REQUIRE_VARIABLE = "AURY_TESTS_REQUIRE_RABBITMQ"
#: Set to ``quorum`` to run the ``rabbitmq`` runs of ``on_both_brokers`` on quorum queues.
QUEUE_TYPE_VARIABLE = "AURY_TESTS_RABBITMQ_QUEUE_TYPE"
#: The queues the fixture modules declare (before their suffix).
FIXTURE_QUEUES = ("fixture", "other", "flows", "flow")

#: Runs a test on the test Redis and on RabbitMQ (ids ``redis`` and ``rabbitmq``).
on_both_brokers = pytest.mark.parametrize("broker_url", ["redis", "rabbitmq"], indirect=True)


def rabbitmq_answers(host: str = "127.0.0.1", port: int = 5672) -> bool:
    """Whether something accepts connections at RabbitMQ's address."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_rabbitmq() -> str:
    """The RabbitMQ URL, or a skip (a failure with ``AURY_TESTS_REQUIRE_RABBITMQ=1``) saying why not."""
    required = os.environ.get(REQUIRE_VARIABLE) == "1"
    try:
        import pika  # noqa: F401
    except ImportError:
        reason = "pika is not installed (pip install 'aury-tasks[rabbitmq]')"
        pytest.fail(reason) if required else pytest.skip(reason)
    if not rabbitmq_answers():
        reason = "no RabbitMQ server answers at 127.0.0.1:5672"
        pytest.fail(f"{reason} ({REQUIRE_VARIABLE}=1)") if required else pytest.skip(reason)
    return AMQP_URL


def broker_url_of_tests(url: str) -> str:
    """``url`` for the ``rabbitmq`` runs: with ``?queue_type=quorum`` when
    ``AURY_TESTS_RABBITMQ_QUEUE_TYPE=quorum``."""
    queue_type = os.environ.get(QUEUE_TYPE_VARIABLE, "classic")
    if queue_type not in ("classic", "quorum"):
        pytest.fail(f"{QUEUE_TYPE_VARIABLE} is classic or quorum, got {queue_type!r}")
    return f"{url}/?queue_type=quorum" if queue_type == "quorum" else url


def unique_suffix() -> str:
    """A suffix that makes a test's queue names its own."""
    return f"-t{uuid.uuid4().hex[:10]}"


def delete_queues(url: str, names: Iterable[str]) -> None:
    """Delete these queues and their delay (``.DQ``) and dead-letter (``.XQ``) queues, if they exist."""
    import pika

    plain_url = url.split("?")[0]  # pika knows no queue_type
    connection = pika.BlockingConnection(pika.URLParameters(plain_url))
    try:
        channel = connection.channel()
        for name in names:
            for queue in (name, f"{name}.DQ", f"{name}.XQ"):
                channel.queue_delete(queue)
    finally:
        connection.close()
