"""A real ``aum worker`` subprocess runs what a producer in this process sends."""

from __future__ import annotations

import os
import time

import dramatiq
import pytest
import redis
from brokers import on_both_brokers

from aury_tasks import (
    PayloadTooLarge,
    RunMode,
    SerializationError,
    TaskFailed,
    TaskHandle,
    TaskManager,
    TaskSettings,
    TaskStatus,
)
from aury_tasks.broker.redis.broker import AuryRedisBroker
from aury_tasks.core import keys

from .events import EventLog, queued_ids, wait_dead_lettered, wait_until


@on_both_brokers
def test_worker_runs_sync_and_async_tasks(start_worker, producer: TaskManager, events: EventLog) -> None:
    # Given a worker on the fixture tasks
    start_worker()
    from sample_modules.jobs.tasks import async_add

    # When a sync task is sent by name and an async one through the imported task object
    producer.get_task("add").send(2, 3)
    async_add.send(x=4, y=5)

    # Then the worker runs both, in its own process, with their arguments
    (added,) = events.wait_for(1, "add")
    (async_added,) = events.wait_for(1, "async_add")
    assert added["result"] == 5
    assert async_added["result"] == 9
    assert added["pid"] != os.getpid()
    assert async_added["pid"] == added["pid"]


def test_a_producer_sends_to_a_worker_in_another_process(
    start_worker, producer: TaskManager, events: EventLog
) -> None:
    # Given this process in the default mode (no TASK_RUN_MODE): a producer without actors
    assert "TASK_RUN_MODE" not in os.environ
    assert producer.run_mode is RunMode.PRODUCER
    add = producer.get_task("add")
    assert add.actor is None
    worker = start_worker()

    # When it sends a task
    handle = add.send(20, 22)

    # Then the task only went through the broker: still no actor here, yet the worker ran it
    assert isinstance(producer.broker, AuryRedisBroker)
    (added,) = events.wait_for(1, "add")
    assert added["result"] == 42
    assert added["pid"] != os.getpid()
    assert add.actor is None
    assert handle.task_name == "sample_modules.jobs.tasks.add"
    assert handle.queue_name == "fixture"
    assert worker.process.poll() is None


def test_a_worker_process_runs_tasks_on_the_settings_aum_worker_checked_without_loading_pydantic(
    start_worker, producer: TaskManager, tmp_path
) -> None:
    # Given a worker whose settings come from the environment (a default task time limit of 123 s)
    start_worker(env={"TASK_TIMEOUT": "123"})

    # When a task reports what its worker process holds
    facts = producer.get_task("process_facts").send().get_result(timeout=20)

    # Then its settings are the ones aum worker checked, handed over without pydantic or click
    # (about 11 MiB less a process), and the handed-over URLs are not left to the task's environment
    assert facts["settings_type"] == "SettingsSnapshot"
    assert facts["timeout"] == 123
    assert facts["modules_dir"].endswith("sample_modules")
    assert facts["loaded"] == []
    assert facts["environment_has_snapshot"] is False


@on_both_brokers
def test_a_delayed_task_does_not_run_before_its_delay(
    start_worker, producer: TaskManager, events: EventLog
) -> None:
    # Given a worker
    start_worker()

    # When a task is sent with a delay of 1 s
    sent_at = time.time()
    handle = producer.get_task("add").send_with_options(args=(1, 1), delay=1)

    # Then it runs, but not before the delay has passed
    assert handle.eta is not None
    (added,) = events.wait_for(1, "add")
    assert added["at"] - sent_at >= 0.99


@on_both_brokers
def test_workers_consume_only_their_queues(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis, queue, on_rabbitmq
) -> None:
    # Given a worker on queue "fixture" only
    fixture_worker = start_worker("-q", queue("fixture"))
    add = producer.get_task("add")

    # When tasks go to queue "other" (its own queue, and one redirected with send_with_options)
    on_other = producer.get_task("on_other_queue").send("declared")
    redirected = add.send_with_options(args=(2, 3), queue_name=queue("other"))
    # ... and a marker task to the worker's own queue, sent last
    add.send(1, 1)

    # Then the worker runs the marker but leaves both "other" tasks waiting in their queue
    (marker,) = events.wait_for(1, "add")
    assert marker["result"] == 2
    assert redirected.queue_name == queue("other")
    assert (on_other.status(), redirected.status()) == (TaskStatus.PENDING, TaskStatus.PENDING)
    if not on_rabbitmq:
        assert sorted(queued_ids(redis_client, "other")) == sorted([on_other.id, redirected.id])
    assert events.all("other") == []

    # When a worker on queue "other" starts
    start_worker("-q", queue("other"))

    # Then it runs both, the redirected task included
    (other,) = events.wait_for(1, "other")
    assert other["tag"] == "declared"
    added = events.wait_for(2, "add")
    assert added[1]["result"] == 5
    assert other["pid"] == added[1]["pid"] != marker["pid"]
    if not on_rabbitmq:
        assert queued_ids(redis_client, "other") == []
    assert fixture_worker.process.poll() is None


@on_both_brokers
def test_a_message_for_an_unknown_task_is_dead_lettered_with_one_log_line(
    start_worker, producer: TaskManager, redis_client: redis.Redis, queue
) -> None:
    # Given a worker, and a message for a task no module declares (an older or newer producer)
    worker = start_worker()
    broker = producer.broker_for_queue(queue("fixture"))
    message = broker.enqueue(
        dramatiq.Message(
            queue_name=queue("fixture"), actor_name="gone.tasks.removed", args=(), kwargs={}, options={}
        )
    )
    handle = TaskHandle(id=message.message_id, task_name="gone.tasks.removed", queue_name=queue("fixture"))

    # When the worker receives it
    wait_dead_lettered(redis_client, handle)

    # Then it is dead-lettered, and the worker says so in one line, without a traceback
    line = worker.wait_for_line("undefined actor")
    assert "gone.tasks.removed" in line
    assert "Traceback" not in worker.output()


@on_both_brokers
def test_a_worker_with_two_processes_runs_tasks_in_both(
    start_worker, producer: TaskManager, events: EventLog
) -> None:
    # Given a worker with two processes of two threads each
    worker = start_worker("-p", "2", "-c", "2")
    worker.wait_for_line("WorkerProcess(1) - Worker process is ready")
    add = producer.get_task("add")

    # When tasks keep arriving while earlier ones are still being fetched
    for i in range(40):
        add.send(i, 1)

    # Then all of them run, each once, in worker processes of that worker
    done = events.wait_for(40, "add")
    assert sorted(event["result"] for event in done) == [i + 1 for i in range(40)]
    assert worker.process.pid not in {event["pid"] for event in done}


PREFETCH_CASES = [
    (["-c", "2"], "2 thread(s), prefetch 8", 8),
    (["-c", "1", "--prefetch", "3"], "1 thread(s), prefetch 3", 3),
]


@pytest.mark.parametrize(("options", "said", "held"), PREFETCH_CASES, ids=["default-4-per-thread", "option"])
def test_a_worker_holds_at_most_its_prefetch_of_a_queue(
    start_worker, producer: TaskManager, events: EventLog, redis_client: redis.Redis,
    options: list[str], said: str, held: int,
) -> None:  # fmt: skip
    # Given 20 tasks of 0.3 s waiting, and a worker that says how many messages it holds
    runs = producer.get_task("runs")
    for i in range(20):
        runs.send(f"held-{i}", 0.3)
    worker = start_worker("-q", "fixture", *options)
    worker.wait_for_line(said)

    # When it has started on them
    events.wait_for(1, "runs")

    # Then it holds (runs, or has fetched and waits to run) that many at most, and exactly that
    # many at some moment
    pattern = f"{keys.DEFAULT.prefix}:__acks__.*.fixture"
    counts = []
    for _ in range(10):
        counts.append(sum(redis_client.scard(key) for key in redis_client.scan_iter(match=pattern)))
        time.sleep(0.05)
    assert max(counts) == held, counts


def test_non_json_arguments_are_refused_before_anything_reaches_redis(
    producer: TaskManager, redis_client: redis.Redis
) -> None:
    # Given a producer on the real broker
    add = producer.get_task("add")
    add.send(1, 2)  # a valid send, so the queue exists
    before = redis_client.llen("aury:fixture")

    # When a task is sent with an argument JSON cannot carry
    with pytest.raises(TypeError, match=r"argument 'y' of .*add is not JSON-serializable \(float\)"):
        add.send(1, y=float("nan"))
    with pytest.raises(SerializationError, match=r"argument 0 of .*add .*\(object\)"):
        add.send(object(), 2)

    # Then nothing more was enqueued
    assert redis_client.llen("aury:fixture") == before


def test_a_message_over_the_size_limit_never_reaches_redis_but_a_retry_is_never_refused(
    start_worker, producer: TaskManager, redis_client: redis.Redis, events: EventLog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Given a producer and a worker limited to 4,000-byte messages
    monkeypatch.setenv("TASK_MAX_MESSAGE_BYTES", "4000")
    producer.configure(settings=TaskSettings.load())
    start_worker("-q", "fixture", env={"TASK_MAX_MESSAGE_BYTES": "4000"})
    always_fails = producer.get_task("always_fails")
    # (once both of its consumers found their queues empty and said so: their own keys)
    idle = [keys.DEFAULT.idle_marker("fixture"), keys.DEFAULT.idle_marker("fixture.DQ")]
    wait_until(lambda: redis_client.exists(*idle) == 2, timeout=10, what="the worker's consumers idle")
    keys_before = set(redis_client.scan_iter())

    # When a message over the limit is sent
    with pytest.raises(PayloadTooLarge, match=r"over TASK_MAX_MESSAGE_BYTES \(4,000\)"):
        always_fails.send("x" * 5000)

    # Then nothing was written: no message, no task record
    assert set(redis_client.scan_iter()) == keys_before

    # When one just under the limit fails, its retries (each message now carries a traceback
    # that repeats the tag: over the limit) are re-enqueued by the worker all the same
    tag = "y" * 3600
    handle = always_fails.send(tag)
    events.wait_for(3, "always_fails", tag=tag, timeout=20)
    with pytest.raises(TaskFailed):
        handle.get_result(timeout=20)
