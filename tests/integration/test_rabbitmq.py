"""RabbitMQ: a producer here sends over AMQP, a real ``aum worker`` on the same broker runs the tasks.

Needs a RabbitMQ server at ``amqp://guest:guest@127.0.0.1:5672`` and pika (the ``rabbitmq`` extra);
skipped otherwise. Each test uses its own queue and deletes it afterwards.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from brokers import delete_queues, require_rabbitmq
from click.testing import CliRunner

from aury_tasks import BrokerFeatureUnsupported, ConfigError, RunMode, TaskFailed, TaskManager, TaskStatus
from aury_tasks.cli.main import main
from aury_tasks.config.settings import get_settings
from aury_tasks.worker.discovery import import_task_modules

pytestmark = pytest.mark.rabbitmq

RABBIT_MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "rabbit_modules"


@pytest.fixture
def amqp_url() -> str:
    """The RabbitMQ URL, or a skip saying why the server cannot be used (a failure in CI)."""
    return require_rabbitmq()


@pytest.fixture
def queue_name(amqp_url: str) -> Iterator[str]:
    """A queue of this test only; it and Dramatiq's delay and dead-letter queues are deleted after."""
    name = f"aury-test-{uuid.uuid4().hex[:12]}"
    yield name
    delete_queues(amqp_url, [name])


@pytest.fixture
def rabbit_producer(amqp_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TaskManager]:
    """The default TaskManager in producer mode on RabbitMQ, with the rabbit fixture tasks."""
    yield producer_on(amqp_url, monkeypatch)
    _forget_rabbit_modules()


def producer_on(url: str, monkeypatch: pytest.MonkeyPatch) -> TaskManager:
    """The default TaskManager in producer mode on ``url``, with the rabbit fixture tasks imported."""
    monkeypatch.setenv("TASK_BROKER_URL", url)
    get_settings.cache_clear()
    TaskManager.reset_instance()
    tm = TaskManager.get_instance()
    _forget_rabbit_modules()
    monkeypatch.syspath_prepend(str(RABBIT_MODULES.parent))
    import_task_modules(RABBIT_MODULES)
    return tm


def _forget_rabbit_modules() -> None:
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


def declared_type_mismatch(url: str, queue: str) -> str:
    """What RabbitMQ answers to a declare of ``queue`` as a plain classic queue (Dramatiq's arguments)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        base = queue.removesuffix(".DQ")  # a delay queue dead-letters to its queue's .XQ
        arguments = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{base}.XQ"}
        if queue.endswith(".XQ"):
            arguments = {"x-message-ttl": 86400000 * 7}
        connection.channel().queue_declare(queue, durable=True, arguments=arguments)
        return "declared: a classic queue"
    except pika.exceptions.ChannelClosedByBroker as refused:
        return str(refused.reply_text)
    finally:
        if connection.is_open:
            connection.close()


def test_quorum_queues_are_declared_as_quorum_and_run_tasks(
    start_worker: Callable[..., Any],
    ledger_on_redis: str,
    amqp_url: str,
    queue_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a worker and a producer on RabbitMQ asking for quorum queues in the URL
    quorum_url = f"{amqp_url}/?queue_type=quorum"
    env = {"TASK_BROKER_URL": quorum_url, "TASK_RESULT_BACKEND_URL": ledger_on_redis}
    start_worker("-q", queue_name, env=env, modules=RABBIT_MODULES)
    producer = producer_on(quorum_url, monkeypatch)

    # When a task is sent to the queue (a delayed one: test_a_delayed_task_runs_on_quorum_queues)
    now = producer.get_task("add").send_with_options(args=(1, 2), queue_name=queue_name)

    # Then it runs
    assert now.get_result(timeout=30) == 3
    # ... and the queue, its delay queue and its dead-letter queue are quorum queues: RabbitMQ
    # refuses to declare them as classic ones, saying what they are
    for queue in (queue_name, f"{queue_name}.DQ", f"{queue_name}.XQ"):
        answer = declared_type_mismatch(amqp_url, queue)
        assert "inequivalent arg 'x-queue-type'" in answer and "quorum" in answer, (queue, answer)


def test_a_delayed_task_runs_on_quorum_queues(
    start_worker: Callable[..., Any],
    ledger_on_redis: str,
    amqp_url: str,
    queue_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a worker and a producer on quorum queues
    quorum_url = f"{amqp_url}/?queue_type=quorum"
    env = {"TASK_BROKER_URL": quorum_url, "TASK_RESULT_BACKEND_URL": ledger_on_redis}
    start_worker("-q", queue_name, env=env, modules=RABBIT_MODULES)
    producer = producer_on(quorum_url, monkeypatch)

    # When a task is sent with a delay of 0.2 s (through the delay queue, .DQ). (The delay of a
    # task's send_with_options is in seconds, Dramatiq's in milliseconds: the delay=200 of issue 23's
    # first quorum test asked for 200 s, hence "never finished" within its 30 s.)
    sent_at = time.time()
    later = producer.get_task("add").send_with_options(args=(2, 3), queue_name=queue_name, delay=0.2)

    # Then it runs, not before its delay
    assert later.get_result(timeout=30) == 5
    record = later.record()
    assert record.status is TaskStatus.SUCCESS
    assert record.eta is not None and abs(record.eta - (sent_at + 0.2)) < 0.5
    assert record.started_at is not None and record.started_at >= sent_at + 0.2


def queue_message_count(url: str, queue: str) -> int:
    """The messages ready in ``queue`` (which exists)."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def test_on_quorum_queues_a_task_that_kills_its_worker_is_dead_lettered_after_max_deliveries(
    start_worker: Callable[..., Any],
    ledger_on_redis: str,
    amqp_url: str,
    queue_name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Given quorum queues with a limit of 3 deliveries, and a task that kills its worker each time
    quorum_url = f"{amqp_url}/?queue_type=quorum"
    monkeypatch.setenv("TASK_MAX_DELIVERIES", "3")
    env = {
        "TASK_BROKER_URL": quorum_url,
        "TASK_RESULT_BACKEND_URL": ledger_on_redis,
        "TASK_MAX_DELIVERIES": "3",
    }
    producer = producer_on(quorum_url, monkeypatch)
    runs = tmp_path / "runs.txt"
    handle = producer.get_task("kills_its_worker").send_with_options(args=(str(runs),), queue_name=queue_name)

    # When workers keep being started (as a supervisor would restart them)
    def dead() -> bool:
        return handle.status() is TaskStatus.DEAD

    deaths, worker, deadline = 0, None, time.monotonic() + 60
    while not dead() and deaths < 6 and time.monotonic() < deadline:
        worker = start_worker("-q", queue_name, env=env, modules=RABBIT_MODULES, ready=False)
        while worker.process.poll() is None and not dead() and time.monotonic() < deadline:
            time.sleep(0.05)
        deaths += worker.process.poll() is not None

    # Then it ran 3 times, each time in a worker that died, and not a 4th time: the 4th worker
    # dead-lettered it, says why in its record, and lives on
    assert dead()
    assert len(set(runs.read_text().split())) == 3 == deaths
    record = handle.record()
    assert record.reason is not None
    assert record.reason.startswith("redelivery_limit: 3 deliveries ended unacknowledged"), record.reason
    assert worker is not None and worker.process.poll() is None
    # ... and the message is in the queue's dead-letter queue, not in the queue
    deadline = time.monotonic() + 10
    while queue_message_count(amqp_url, f"{queue_name}.XQ") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert queue_message_count(amqp_url, f"{queue_name}.XQ") == 1
    assert queue_message_count(amqp_url, queue_name) == 0


def test_a_quorum_queue_of_another_delivery_limit_is_refused_in_one_line(
    amqp_url: str, queue_name: str
) -> None:
    from aury_tasks.broker.rabbitmq import AuryRabbitmqBroker

    # Given a quorum queue declared with TASK_MAX_DELIVERIES=5
    first = AuryRabbitmqBroker(url=amqp_url, queue_type="quorum", max_deliveries=5)
    first.declare_queue(queue_name, ensure=True)
    first.close()

    # When a broker with TASK_MAX_DELIVERIES=3 declares it
    second = AuryRabbitmqBroker(url=amqp_url, queue_type="quorum", max_deliveries=3)
    try:
        with pytest.raises(ConfigError) as refused:
            second.declare_queue(queue_name, ensure=True)
    finally:
        second.close()

    # Then the error names the argument and the setting, in one line
    assert "inequivalent arg 'x-delivery-limit'" in refused.value.message
    assert "TASK_MAX_DELIVERIES" in refused.value.message
    assert "\n" not in refused.value.message


def test_a_worker_refuses_a_queue_of_another_type_in_one_line(
    start_worker: Callable[..., Any], ledger_on_redis: str, amqp_url: str, queue_name: str
) -> None:
    # Given a classic queue (Dramatiq's arguments) already on the server
    assert declared_type_mismatch(amqp_url, queue_name) == "declared: a classic queue"

    # When a worker of quorum queues starts on it
    worker = start_worker(
        "-q", queue_name,
        env={"TASK_BROKER_URL": amqp_url, "TASK_RABBITMQ_QUEUE_TYPE": "quorum"},
        modules=RABBIT_MODULES, ready=False,
    )  # fmt: skip

    # Then it stops at once with exit code 2 and one line naming the queue and the settings
    assert worker.wait(30) == 2
    line = worker.wait_for_line("RabbitMQ refused queue")
    assert queue_name in line and "TASK_RABBITMQ_QUEUE_TYPE" in line
    assert "Traceback" not in worker.output()


def test_a_worker_warns_of_tasks_that_may_outlast_the_consumer_timeout(
    start_worker: Callable[..., Any],
    ledger_on_redis: str,
    rabbit_producer: TaskManager,
    amqp_url: str,
    queue_name: str,
    tmp_path: Path,
) -> None:
    # Given a worker on RabbitMQ, its server's consumer_timeout not stated (RabbitMQ's 30 minutes)
    worker = start_worker("-q", queue_name, env={"TASK_BROKER_URL": amqp_url}, modules=RABBIT_MODULES)

    # Then at start it warned once, naming the one task allowed an hour, and only that one
    line = worker.wait_for_line("consumer_timeout (1800 s")
    assert "rabbit_modules.rabbit.tasks.long_report (3600 s)" in line
    assert "tasks.add" not in line
    assert worker.output().count("consumer_timeout (1800 s") == 1
    # ... and it still runs that task
    out = tmp_path / "report.json"
    rabbit_producer.get_task("long_report").send_with_options(args=(str(out),), queue_name=queue_name)
    assert wait_for_file(out)["text"] == "report"


def test_what_rabbitmq_cannot_do_fails_naming_the_feature(
    ledger_on_redis: str, rabbit_producer: TaskManager, queue_name: str
) -> None:
    # Given a producer on RabbitMQ (classic queues, no maximum priority)
    add = rabbit_producer.get_task("add")

    # When a task is sent with a priority, then the dead letters of a queue are asked for
    with pytest.raises(
        BrokerFeatureUnsupported, match=r"^task priority \(.*add\) is not supported on a RabbitMQ"
    ):
        add.send_with_options(args=(1, 2), queue_name=queue_name, priority=5)
    with pytest.raises(BrokerFeatureUnsupported, match=r"^dead-letter listing, requeue and purge") as caught:
        rabbit_producer.dead_letters(queue_name)

    # Then each says what to do instead, and aum says the same in one line, exit code 2
    assert "<name>.XQ" in caught.value.message
    result = CliRunner().invoke(main, ["dlq", "list", "-q", queue_name])
    assert result.exit_code == 2, result.output
    assert "dead-letter listing, requeue and purge" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
