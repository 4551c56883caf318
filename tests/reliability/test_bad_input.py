"""Scenarios 7 to 10 and 12: input that cannot run, or cannot even be sent.

What a producer cannot send (too large, not JSON) is refused at ``send()`` with one readable
line, before anything is written to Redis. What a worker cannot run (a message it cannot decode,
a task it does not know, a task that always raises) is dead-lettered with its reason, logged
once, and the worker carries on with everything else: none of the good tasks around it is lost.
"""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import dramatiq
import pytest
import redis
from conftest import WorkerProcess, spawn_aum

from aury_tasks import TaskManager, TaskStatus
from aury_tasks.core import keys
from aury_tasks.core.errors import PayloadTooLarge, SerializationError, TaskFailed, TaskNotFound

from .conftest import MODULES, QUEUE, SecretsSweep, StartWorker
from .harness import Figures, PrivateRedis, Tally, done_count, wait_for
from .test_worker_faults import queue_is_empty, send_work

#: Two MiB of argument: twice the default ``TASK_MAX_MESSAGE_BYTES``.
TWO_MIB = 2 * 1024 * 1024
#: The delay queue beside the suite's queue (retries and delayed sends wait there).
DELAY_QUEUE = keys.DEFAULT.broker_queue(keys.delay_queue_name(QUEUE))

SendAum = Callable[..., WorkerProcess]


@pytest.fixture
def raw(server: PrivateRedis) -> Iterator[redis.Redis]:
    """A client of the private Redis that reads bytes as bytes (messages need not be UTF-8)."""
    connection = redis.Redis.from_url(server.url)
    yield connection
    connection.close()


@pytest.fixture
def send_aum(server: PrivateRedis, tmp_path: Path, processes: list[WorkerProcess]) -> SendAum:
    """Run ``aum send ARGS`` to its end (its output is swept for the password like a worker's)."""

    def run(*args: str, env: dict[str, str | None] | None = None) -> WorkerProcess:
        spawned = spawn_aum(server.url, tmp_path, "send", *args, "--modules", str(MODULES), env=env)
        processes.append(spawned)
        spawned.wait(60)
        return spawned

    return run


def snapshot(raw: redis.Redis) -> dict[bytes, bytes | None]:
    """Every key of the Redis with its serialized value (``DUMP``): any write shows as a change."""
    return {key: raw.dump(key) for key in raw.scan_iter(count=1000)}


def error_lines(process: WorkerProcess) -> list[str]:
    """The lines of a finished ``aum`` command that report an error."""
    return [line for line in process.lines if line.startswith("Error:")]


def dead_letter_ids(client: redis.Redis) -> set[str]:
    """The broker ids of the suite queue's dead letters."""
    return set(client.zrange(keys.DEFAULT.dead_letters(QUEUE), 0, -1))


def push_raw(raw: redis.Redis, body: bytes) -> str:
    """Put ``body`` in the queue the way Dramatiq's enqueue does (messages hash, then the list)."""
    delivery_id = str(uuid.uuid4())
    raw.hset(keys.DEFAULT.broker_messages(QUEUE), delivery_id, body)
    raw.rpush(keys.DEFAULT.broker_queue(QUEUE), delivery_id)
    return delivery_id


@pytest.mark.scenario("7. raw malformed messages, then 1,000 good ones")
def test_malformed_messages_are_dead_lettered_once_and_the_good_ones_all_run(
    producer: TaskManager,
    start_worker: StartWorker,
    client: redis.Redis,
    raw: redis.Redis,
    figures: Figures,
) -> None:
    work = producer.get_task("work")
    readable_id = str(uuid.uuid4())
    envelope = {"queue_name": QUEUE, "actor_name": work.name}
    malformed = {
        "bad JSON": b'{"queue_name": "reliability", "actor_name": ',
        "not UTF-8": b"\xff\xfe\x00\x80 not utf-8 \xc3\x28",
        "empty": b"",
        "a JSON array": b"[1, 2, 3]",
        "missing fields": json.dumps(envelope).encode(),
        "missing fields, readable id": json.dumps({**envelope, "message_id": readable_id}).encode(),
        "a field of the wrong type": json.dumps(
            {**envelope, "message_id": str(uuid.uuid4()), "message_timestamp": 0, "args": 5, "options": {}}
        ).encode(),
        "200 KB of garbage": b"<" * 200_000,
    }
    # Given a worker of 8 threads on the queue
    worker = start_worker("-c", "8")

    # When malformed messages are pushed straight into the queue's Redis structures, then 1,000 good tasks
    bad = {push_raw(raw, body): label for label, body in malformed.items()}
    tags = send_work(producer, "good", 1_000)

    # Then every good task completes, once
    wait_for(lambda: done_count(client) >= 1_000, timeout=60, what="1,000 good tasks", every=0.2)
    wait_for(lambda: len(dead_letter_ids(client)) >= len(bad), timeout=20, what="the dead letters")
    wait_for(lambda: queue_is_empty(client), timeout=20, what="every message settled")
    tally = Tally.read(client, [*tags, *bad], dead_tags=dead_letter_ids(client))
    figures.add(tally)
    figures.extra["malformed"] = len(bad)
    assert tally.lost == 0, tally.lost_tags[:20]
    assert tally.duplicates == 0
    assert tally.completed == 1_000

    # ... each malformed message is in the dead letters, byte for byte, with the reason undecodable
    assert dead_letter_ids(client) == set(bad)
    stored = raw.hmget(keys.DEFAULT.dead_letter_messages(QUEUE), list(bad))
    assert dict(zip(bad, stored, strict=True)) == {d: malformed[label] for d, label in bad.items()}
    letters = producer.dead_letters(QUEUE).list(limit=100)
    assert {letter.delivery_id for letter in letters} == set(bad)
    assert all(letter.error_type == "undecodable" for letter in letters), letters
    assert all(letter.status == TaskStatus.DEAD.value for letter in letters), letters
    # ... and the one whose task id can be read has a record saying so
    record = producer.task_record(readable_id)
    assert record.status is TaskStatus.DEAD
    assert record.reason == "undecodable: KeyError: 'args'", record.reason

    # ... the worker logged one short line per malformed message, no traceback, no consumer restart
    # (its log lines travel through its supervisor's pipe: they may reach us after the counts)
    wait_for(lambda: worker.output().count("undecodable message") >= len(bad), timeout=10, what="log lines")
    output = worker.output()
    logged = [line for line in worker.lines if "undecodable message" in line]
    assert sorted(d for line in logged for d in bad if d in line) == sorted(bad), logged
    assert len(logged) == len(bad), logged
    assert all(len(line) < 600 for line in logged), max(logged, key=len)
    assert "Traceback" not in output
    assert "Restarting consumer" not in output and "unexpected error" not in output, output[-3000:]
    assert worker.process.poll() is None


@pytest.mark.scenario("8. a message for an unknown task name")
def test_a_message_for_an_unknown_task_is_dead_with_a_readable_reason(
    producer: TaskManager,
    start_worker: StartWorker,
    client: redis.Redis,
    send_aum: SendAum,
    sweep: SecretsSweep,
    figures: Figures,
) -> None:
    # Given a worker, and well-formed messages for tasks no worker has, sent among 200 good ones
    # (a producer cannot send them by name: `get_task` and `aum send` refuse an unknown name)
    with pytest.raises(TaskNotFound, match="unknown task 'no_such_task'"):
        producer.get_task("no_such_task")
    refused = send_aum("no_such_task", '["ghost"]')
    assert refused.process.returncode == 2
    assert [line.split(";")[0] for line in error_lines(refused)] == ["Error: unknown task 'no_such_task'"]
    sweep.keep(refused.output())
    worker = start_worker("-c", "4")
    unknown_names = ["no_such_task", "reliability_modules.reliability.tasks.removed"]
    tags: list[str] = []
    ghosts = {}
    for n, name in enumerate(unknown_names):
        tags += send_work(producer, f"good{n}", 100)
        message = producer.broker_for_queue(QUEUE).enqueue(
            dramatiq.Message(queue_name=QUEUE, actor_name=name, args=("ghost",), kwargs={}, options={})
        )
        ghosts[name] = producer.handle(message.message_id)

    # When the worker receives them
    wait_for(lambda: done_count(client) >= 200, timeout=60, what="the good tasks")
    failures = {}
    for name, handle in ghosts.items():
        with pytest.raises(TaskFailed) as caught:
            handle.get_result(timeout=20)
        failures[name] = caught.value
    wait_for(lambda: queue_is_empty(client), timeout=20, what="every message settled")

    # Then each is dead, saying which task is unknown, and its message is in the dead letters
    for name, handle in ghosts.items():
        reason = f"unknown task {name!r}"
        assert reason in failures[name].error_message
        record = handle.record()
        assert (record.status, record.reason, record.attempt) == (TaskStatus.DEAD, reason, 1)
        assert (record.task_name, record.queue_name) == (name, QUEUE)
        letter = producer.dead_letters(QUEUE).get(handle.id)
        assert (letter.task_name, letter.status, letter.error_message) == (name, "dead", reason)
        assert letter.args == ["ghost"]
        # ... the worker said so in one readable line (it may reach us after the task's record)
        worker.wait_for_line(f"Received message for undefined actor {name!r}", timeout=10)
        said = [line for line in worker.lines if name in line]
        assert len(said) == 1, said
    # ... without a traceback, or a restart of its consumer
    assert "Traceback" not in worker.output()
    assert "Restarting consumer" not in worker.output()
    ghost_ids = [handle.id for handle in ghosts.values()]
    assert dead_letter_ids(client) == {
        client.hget(keys.DEFAULT.task_record(i), "dead_letter_id") for i in ghost_ids
    }

    # ... and every good task completed, once
    tally = Tally.read(client, [*tags, *ghost_ids], dead_tags=ghost_ids)
    figures.add(tally)
    assert tally.dead_lettered == len(unknown_names)
    assert tally.lost == 0, tally.lost_tags[:20]
    assert tally.duplicates == 0


@pytest.mark.scenario("9. a 2 MiB payload")
def test_a_2_mib_payload_is_refused_before_anything_is_written(
    producer: TaskManager,
    start_worker: StartWorker,
    client: redis.Redis,
    raw: redis.Redis,
    send_aum: SendAum,
    sweep: SecretsSweep,
    figures: Figures,
) -> None:
    work = producer.get_task("work")
    # Given a queue holding 5 tasks (so the queue, its messages and the ledger's keys all exist)
    tags = send_work(producer, "before", 5)
    before = snapshot(raw)

    # When 2 MiB are sent: positional, keyword, delayed; and with `aum send` over a lowered cap
    big = "x" * TWO_MIB
    sends: dict[str, Callable[[], object]] = {
        "positional": lambda: work.send(big),
        "keyword": lambda: work.send_with_options(args=["big"], kwargs={"seconds": big}),
        "delayed": lambda: work.send_with_options(args=[big], delay=30),
    }
    for how, send in sends.items():
        # Then each send raises PayloadTooLarge with one readable line, naming the task, size and limit
        with pytest.raises(PayloadTooLarge) as caught:
            send()
        message = sweep.keep(str(caught.value))
        assert "\n" not in message, how
        assert message.startswith(f"message of {work.name} is 2,097,"), message
        assert "over TASK_MAX_MESSAGE_BYTES (1,048,576)" in message
        assert isinstance(caught.value, ValueError) and caught.value.exit_code == 2
    # ... and 2 MiB of metadata (kept on the record, not in the message) is refused the same way
    with pytest.raises(
        PayloadTooLarge, match=r"^metadata of .* is 2,097,[\d,]+ bytes, over TASK_MAX_MESSAGE_BYTES"
    ):
        work.send_with_options(args=["meta"], metadata={"blob": big})
    cli = send_aum("work", json.dumps(["z" * 2_000]), env={"TASK_MAX_MESSAGE_BYTES": "1024"})
    assert cli.process.returncode == 2
    assert len(error_lines(cli)) == 1 and "TASK_MAX_MESSAGE_BYTES (1,024)" in error_lines(cli)[0], cli.lines
    assert "Traceback" not in cli.output()

    # ... and nothing was written: no key of the Redis changed (queue, messages, delay queue, ledger)
    assert snapshot(raw) == before

    # When normal sends follow, one of them just under the limit
    near_limit = "y" * (1024 * 1024 - 1024)
    work.send(near_limit)
    tags += [near_limit, *send_work(producer, "after", 100)]
    start_worker("-c", "8")

    # Then they all complete, once, and the ledger knows only the tasks that were sent
    wait_for(lambda: done_count(client) >= len(tags), timeout=60, what="every task sent")
    tally = Tally.read(client, tags)
    figures.add(tally)
    figures.extra["refused"] = len(sends) + 1
    assert tally.lost == 0, [tag[:20] for tag in tally.lost_tags]
    assert tally.duplicates == 0
    assert producer.list_tasks(page_size=1).total == len(tags)  # (a read catches the indexes up)
    assert client.zcard(keys.DEFAULT.status_index("success")) == len(tags)


class Opaque:
    """An object JSON knows nothing about."""


@pytest.mark.scenario("10. non-JSON arguments")
def test_non_json_arguments_are_refused_before_anything_is_written(
    producer: TaskManager,
    start_worker: StartWorker,
    client: redis.Redis,
    raw: redis.Redis,
    send_aum: SendAum,
    sweep: SecretsSweep,
    figures: Figures,
) -> None:
    work = producer.get_task("work")
    circular: list[object] = []
    circular.append(circular)
    deep: list[object] = []
    inner = deep
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]  # type: ignore[assignment]
    # Given a queue holding 5 tasks
    tags = send_work(producer, "before", 5)
    before = snapshot(raw)

    # When tasks are sent with arguments (or metadata) that strict JSON cannot carry
    def arg(n: int | str, kind: str) -> str:
        return f"argument {n!r} of {work.name} is not JSON-serializable ({kind})"

    now = datetime.datetime.now()
    sends: dict[str, tuple[Callable[[], object], str]] = {
        "datetime": (lambda: work.send(now), arg(0, "datetime")),
        "set": (lambda: work.send("t", {1, 2}), arg(1, "set")),
        "Decimal": (lambda: work.send("t", decimal.Decimal("0.1")), arg(1, "Decimal")),
        "NaN": (lambda: work.send("t", float("nan")), arg(1, "float") + ": Out of range float"),
        "-Infinity": (
            lambda: work.send_with_options(args=["t"], kwargs={"seconds": float("-inf")}),
            arg("seconds", "float") + ": Out of range float",
        ),
        "an object": (lambda: work.send(Opaque()), arg(0, "Opaque")),
        "a date deep inside": (
            lambda: work.send({"a": [1, {"b": now.date()}]}),
            arg(0, "dict") + ": Object of type date",
        ),
        "a tuple key": (lambda: work.send({("a", "b"): 1}), arg(0, "dict") + ": keys must be str"),
        "a circular list": (lambda: work.send(circular), arg(0, "list") + ": Circular reference"),
        "a delayed set": (lambda: work.send_with_options(args=[{1}], delay=30), arg(0, "set")),
        "nested 100,000 deep": (lambda: work.send(deep), arg(0, "list") + ": nested too deeply"),
        "metadata": (
            lambda: work.send_with_options(args=["t"], metadata={"when": now}),
            f"metadata 'when' of {work.name} is not JSON-serializable (datetime)",
        ),
    }
    for what, (send, expected) in sends.items():
        # Then each raises SerializationError (a TypeError) in one line naming the argument and its type
        with pytest.raises(SerializationError) as caught:
            send()
        message = sweep.keep(str(caught.value))
        assert message.startswith(expected), (what, message)
        assert "\n" not in message, what
        assert isinstance(caught.value, TypeError) and caught.value.exit_code == 2

    # ... and `aum send` refuses bad JSON, and JSON that strict JSON refuses, in one line, exit code 2
    cli = {
        "not JSON": (['["t",'], "Error: Invalid value for ARGS_JSON: not valid JSON"),
        "not an array": (['{"tag": "t"}'], "Error: Invalid value for ARGS_JSON: must be a JSON array"),
        "NaN": (['["t", NaN]'], f"Error: argument 1 of {work.name} is not JSON-serializable (float)"),
        "Infinity": (['["t"]', "--kwargs", '{"seconds": Infinity}'], "Error: argument 'seconds' of"),
    }
    for what, (args, expected) in cli.items():
        refused = send_aum("work", *args)
        assert refused.process.returncode == 2, (what, refused.lines)
        assert len(error_lines(refused)) == 1, (what, refused.lines)
        assert error_lines(refused)[0].startswith(expected), (what, refused.lines)
        assert "Traceback" not in refused.output()

    # ... and nothing was written
    assert snapshot(raw) == before

    # When normal sends follow
    tags += send_work(producer, "after", 100)
    start_worker("-c", "8")

    # Then they all complete, once, and the ledger knows only the tasks that were sent
    wait_for(lambda: done_count(client) >= len(tags), timeout=60, what="every task sent")
    tally = Tally.read(client, tags)
    figures.add(tally)
    figures.extra["refused"] = len(sends) + len(cli)
    assert tally.lost == 0, tally.lost_tags[:20]
    assert tally.duplicates == 0
    assert producer.list_tasks(page_size=1).total == len(tags)  # (a read catches the indexes up)


@pytest.mark.scenario("12. a task that always raises")
def test_a_task_that_always_raises_runs_max_retries_plus_one_times_then_is_dead_lettered(
    producer: TaskManager, start_worker: StartWorker, client: redis.Redis, figures: Figures
) -> None:
    always_raises = producer.get_task("always_raises")
    assert always_raises.max_retries == 3
    # Given a worker, and 5 tasks that raise on every attempt sent among 300 good ones
    start_worker("-c", "8")
    tags: list[str] = []
    failing = {}
    for n in range(5):
        tags += send_work(producer, f"good{n}", 60)
        failing[f"fails-{n}"] = always_raises.send(f"fails-{n}")

    # When they have run out of retries
    for tag, handle in failing.items():
        with pytest.raises(TaskFailed) as caught:
            handle.get_result(timeout=30)
        # Then each ended with its last error
        last_error = (caught.value.error_type, caught.value.error_message)
        assert last_error == ("RuntimeError", f"attempt 4 of {tag} failed")
    wait_for(lambda: done_count(client) >= 300, timeout=60, what="the good tasks")
    wait_for(lambda: queue_is_empty(client) and not client.llen(DELAY_QUEUE), timeout=20, what="no retries")

    # ... each ran exactly max_retries + 1 = 4 times, and nothing is left that could run it again
    for tag, handle in failing.items():
        assert client.hget("rel:started", tag) == "4"
        # ... its record says failure (the ledger's word for "out of retries, dead-lettered"), with each error
        record = handle.record()
        assert (record.status, record.attempt) == (TaskStatus.FAILURE, 4)
        assert (record.error_type, record.error_message) == ("RuntimeError", f"attempt 4 of {tag} failed")
        every_error = [(n, f"attempt {n} of {tag} failed") for n in (1, 2, 3, 4)]
        assert [(error["attempt"], error["message"]) for error in record.errors] == every_error
        assert "RuntimeError: attempt 4" in record.traceback
        # ... and its message is in the dead letters, with how it ended
        letter = producer.dead_letters(QUEUE).get(handle.id)
        assert (letter.status, letter.error_type, letter.args) == ("failure", "RuntimeError", [tag])
    assert len(dead_letter_ids(client)) == len(failing)

    # ... and every good task completed, once
    tally = Tally.read(client, [*tags, *failing], dead_tags=failing)
    figures.add(tally)
    figures.extra["attempts_each"] = 4
    assert tally.dead_lettered == len(failing)
    assert tally.lost == 0, tally.lost_tags[:20]
    assert tally.duplicates == 0
