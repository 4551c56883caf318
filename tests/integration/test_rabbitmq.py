"""RabbitMQ: a producer here sends over AMQP, a real ``aum worker`` on the same broker runs the tasks.

Needs a RabbitMQ server at ``amqp://guest:guest@127.0.0.1:5672`` and pika (the ``rabbitmq`` extra);
skipped otherwise. Each test uses its own queue and deletes it afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aury_tasks import RunMode, TaskFailed, TaskManager, TaskStatus
from aury_tasks.config.settings import get_settings
from aury_tasks.worker.discovery import import_task_modules

pytestmark = pytest.mark.rabbitmq

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672"
RABBIT_MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "rabbit_modules"


def _rabbitmq_answers(host: str = "127.0.0.1", port: int = 5672) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def amqp_url() -> str:
    """The RabbitMQ URL, or a skip saying why the server cannot be used."""
    pytest.importorskip("pika", reason="pika is not installed (pip install 'aury-tasks[rabbitmq]')")
    if not _rabbitmq_answers():
        pytest.skip("no RabbitMQ server answers at 127.0.0.1:5672")
    return AMQP_URL


@pytest.fixture
def queue_name(amqp_url: str) -> Iterator[str]:
    """A queue of this test only; it and Dramatiq's delay and dead-letter queues are deleted after."""
    import pika

    name = f"aury-test-{uuid.uuid4().hex[:12]}"
    yield name
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        for queue in (name, f"{name}.DQ", f"{name}.XQ"):
            channel.queue_delete(queue)
    finally:
        connection.close()


@pytest.fixture
def rabbit_producer(amqp_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TaskManager]:
    """The default TaskManager in producer mode on RabbitMQ, with the rabbit fixture tasks."""
    monkeypatch.setenv("TASK_BROKER_URL", amqp_url)
    get_settings.cache_clear()
    tm = TaskManager.get_instance()
    for name in [m for m in sys.modules if m.split(".")[0] == RABBIT_MODULES.name]:
        del sys.modules[name]
    monkeypatch.syspath_prepend(str(RABBIT_MODULES.parent))
    import_task_modules(RABBIT_MODULES)
    yield tm
    for name in [m for m in sys.modules if m.split(".")[0] == RABBIT_MODULES.name]:
        del sys.modules[name]


def wait_for_file(path: Path, timeout: float = 20.0) -> dict:
    """The JSON a task wrote to ``path``, once it is there (written atomically by the task)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"no task wrote {path} within {timeout} s")
        time.sleep(0.05)
    return json.loads(path.read_text())


def test_a_worker_on_rabbitmq_runs_what_a_producer_sends(
    start_worker: Callable[..., Any],
    rabbit_producer: TaskManager,
    queue_name: str,
    amqp_url: str,
    tmp_path: Path,
) -> None:
    # Given a worker on RabbitMQ consuming this test's queue
    worker = start_worker("-q", queue_name, env={"TASK_BROKER_URL": amqp_url}, modules=RABBIT_MODULES)
    write_file = rabbit_producer.get_task("write_file")
    write_file_async = rabbit_producer.get_task("write_file_async")

    # When this process, a producer, sends a sync and an async task to that queue
    sync_out, async_out = tmp_path / "sync.json", tmp_path / "async.json"
    sync_handle = write_file.send_with_options(args=(str(sync_out), "hello"), queue_name=queue_name)
    write_file_async.send_with_options(
        kwargs={"path": str(async_out), "text": "world"}, queue_name=queue_name
    )

    # Then the worker runs both, in its own process, through a RabbitMQ broker
    assert rabbit_producer.run_mode is RunMode.PRODUCER
    assert rabbit_producer.broker_info.kind == "rabbitmq"
    assert write_file.actor is None
    assert sync_handle.queue_name == queue_name
    assert sync_handle.task_name == "rabbit_modules.rabbit.tasks.write_file"
    synced = wait_for_file(sync_out)
    awaited = wait_for_file(async_out)
    assert synced == {"text": "hello", "kind": "sync", "pid": synced["pid"]}
    assert awaited == {"text": "world", "kind": "async", "pid": awaited["pid"]}
    assert synced["pid"] != os.getpid()
    # and the worker's log names the broker with its password masked
    banner = worker.wait_for_line("broker: rabbitmq at ")
    assert "amqp://guest:***@127.0.0.1:5672" in banner
    assert "guest:guest" not in worker.output()


@pytest.fixture
def ledger_on_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """TASK_RESULT_BACKEND_URL pointing at the test Redis: where a RabbitMQ setup keeps its ledger."""
    monkeypatch.setenv("TASK_RESULT_BACKEND_URL", redis_url)
    return redis_url


def test_tasks_on_rabbitmq_are_followed_in_a_redis_ledger(
    start_worker: Callable[..., Any],
    ledger_on_redis: str,
    rabbit_producer: TaskManager,
    queue_name: str,
    amqp_url: str,
) -> None:
    # Given a worker on RabbitMQ whose ledger is the test Redis
    start_worker(
        "-q",
        queue_name,
        env={"TASK_BROKER_URL": amqp_url, "TASK_RESULT_BACKEND_URL": ledger_on_redis},
        modules=RABBIT_MODULES,
    )

    # When a task that returns and one that fails are sent over AMQP
    added = rabbit_producer.get_task("add").send_with_options(args=(2, 40), queue_name=queue_name)
    refused = rabbit_producer.get_task("refuses").send_with_options(args=("no way",), queue_name=queue_name)

    # Then their records say how they went, with the result and the remote error
    assert added.get_result(timeout=30) == 42
    record = added.record()
    assert (record.status, record.queue_name) == (TaskStatus.SUCCESS, queue_name)
    assert record.worker and record.finished_at is not None
    with pytest.raises(TaskFailed) as caught:
        refused.get_result(timeout=30)
    assert (caught.value.error_type, caught.value.error_message) == ("ValueError", "no way")
    assert refused.status() is TaskStatus.FAILURE
    assert {r.id for r in rabbit_producer.list_tasks(queue=queue_name).items} == {added.id, refused.id}
