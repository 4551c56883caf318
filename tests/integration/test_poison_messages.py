"""Messages a worker cannot decode: dead-lettered once with the reason, and the worker goes on.

Dramatiq's Redis consumer restarts in a loop on such a message (PR #375); these tests push raw
bytes into a real queue next to good tasks and watch a real worker.
"""

from __future__ import annotations

import json
import uuid

import redis

from aury_tasks import TaskManager, TaskStatus
from aury_tasks.broker.redis.consumer import UNDECODABLE
from aury_tasks.core import keys

from .events import EventLog, wait_until

QUEUE = "fixture"


def push_raw(client: redis.Redis, body: bytes) -> str:
    """Put ``body`` in the queue as Dramatiq's enqueue would: an id in the list, the body in the hash."""
    delivery_id = str(uuid.uuid4())
    client.hset(keys.DEFAULT.broker_messages(QUEUE), delivery_id, body)
    client.rpush(keys.DEFAULT.broker_queue(QUEUE), delivery_id)
    return delivery_id


def test_undecodable_messages_are_dead_lettered_and_the_good_ones_run(
    start_worker, producer: TaskManager, redis_client: redis.Redis, events: EventLog
) -> None:
    # Given, in a queue, bad JSON, bytes that are not UTF-8, a message missing its fields, then 50 good tasks
    bad_json = push_raw(redis_client, b'{"queue_name": "fixture", "actor_name": ')
    not_utf8 = push_raw(redis_client, b"\xff\xfe\x00garbage" * 40)
    task_id = str(uuid.uuid4())
    missing = push_raw(redis_client, json.dumps({"message_id": task_id, "queue_name": QUEUE}).encode())
    handles = [producer.get_task("add").send(i, 1) for i in range(50)]

    # When a worker consumes the queue
    worker = start_worker("-q", QUEUE)

    # Then every good task runs
    done = events.wait_for(50, "add", timeout=30)
    assert sorted(event["result"] for event in done) == list(range(1, 51))
    assert all(handle.status() is TaskStatus.SUCCESS for handle in handles)

    # And the three bad messages are dead letters, marked undecodable, and off the queue
    dlq = producer.dead_letters(QUEUE)
    wait_until(lambda: len(dlq) >= 3, timeout=10, what="three dead letters")
    letters = [letter for letter in dlq.list() if letter.error_type == UNDECODABLE]
    assert {letter.delivery_id for letter in letters} == {bad_json, not_utf8, missing}
    assert redis_client.llen(keys.DEFAULT.broker_queue(QUEUE)) == 0
    assert redis_client.hlen(keys.DEFAULT.broker_messages(QUEUE)) == 0  # nothing left unacknowledged

    # And each was logged once, in one line showing only its start; the consumer never restarted
    lines = worker.output().splitlines()
    for delivery_id in (bad_json, not_utf8, missing):
        [line] = [line for line in lines if delivery_id in line]
        assert "undecodable message" in line and len(line) < 600
    assert "… (" in next(line for line in lines if not_utf8 in line)  # 520 bytes, shown truncated
    assert not [line for line in lines if "Restarting consumer" in line or "Traceback" in line]

    # And the one whose task id could be read is dead in the ledger, with the reason
    record = producer.task_record(task_id)
    assert record.status is TaskStatus.DEAD and record.reason == f"{UNDECODABLE}: KeyError: 'args'"

    # And requeue leaves them (they cannot be sent again); purge removes them
    assert dlq.requeue() == {}
    assert dlq.purge() == 3
