"""Watching what the fixture tasks did: bounded waits on the events they record and on dead letters.

Fixture tasks ``RPUSH`` one JSON event per attempt to ``test:events``; a test waits until the
events it expects are there (polling inside a deadline, never a fixed sleep).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from aury_tasks import TaskHandle, TaskStatus
from aury_tasks.core import keys

T = TypeVar("T")

#: How often a bounded wait looks again.
POLL_INTERVAL = 0.02

#: How long a worker may hold the statistics of its ended tasks before they are in Redis (its
#: StatsTally flushes once a second), with room for a loaded machine.
STATS_FLUSH_TIMEOUT = 10.0


def wait_until(check: Callable[[], T], *, timeout: float, what: str) -> T:
    """Return ``check()``'s first truthy value, polling until ``timeout`` seconds have passed.

    Raises:
      AssertionError: naming ``what`` when the deadline passes first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_INTERVAL)


class EventLog:
    """The events the fixture tasks recorded in the Redis list ``test:events``, oldest first."""

    KEY = "test:events"

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def all(self, kind: str | None = None, *, tag: str | None = None) -> list[dict[str, Any]]:
        """Every event so far, or those of ``kind`` and ``tag``."""
        events = [json.loads(raw) for raw in self.client.lrange(self.KEY, 0, -1)]
        return [
            event
            for event in events
            if (kind is None or event["kind"] == kind) and (tag is None or event.get("tag") == tag)
        ]

    def wait_for(
        self, count: int, kind: str | None = None, *, tag: str | None = None, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """Wait until at least ``count`` matching events were recorded; return the first ``count``.

        Raises:
          AssertionError: listing every event recorded, when they do not come in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            events = self.all(kind, tag=tag)
            if len(events) >= count:
                return events[:count]
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"expected {count} {kind or 'any'} event(s) (tag {tag!r}) within {timeout}s, "
                    f"got {len(events)}; all events: {self.all()}"
                )
            time.sleep(POLL_INTERVAL)


def _message_ids(client: redis.Redis, key: str, redis_ids: list[str]) -> list[str]:
    """The task ids of the messages with these broker ids, kept as JSON in the hash ``key``.

    Dramatiq's Redis broker files each message under a fresh ``redis_message_id`` (a retry gets a
    new one); the task id (``TaskHandle.id``) is the ``message_id`` inside the message.
    """
    if not redis_ids:
        return []
    return [json.loads(raw)["message_id"] for raw in client.hmget(key, redis_ids) if raw is not None]


def dead_lettered_ids(client: redis.Redis, queue_name: str) -> list[str]:
    """Task ids of the messages of ``queue_name`` that failed for good (its dead-letter set)."""
    ids = list(client.zrange(keys.DEFAULT.dead_letters(queue_name), 0, -1))
    return _message_ids(client, keys.DEFAULT.dead_letter_messages(queue_name), ids)


def wait_dead_lettered(client: redis.Redis, handle: TaskHandle, timeout: float = 15.0) -> None:
    """Wait until the task failed for good: no retry of it is pending any more.

    On a Redis broker, until its message is in the queue's dead-letter set; on another broker
    (RabbitMQ, whose dead-letter queue only a consumer could read), until its record ended failed.
    """
    if handle.manager.broker_info.kind == "redis":
        wait_until(
            lambda: handle.id in dead_lettered_ids(client, handle.queue_name),
            timeout=timeout,
            what=f"task {handle.id} ({handle.task_name}) to be dead-lettered",
        )
        return
    wait_until(
        lambda: handle.status() in (TaskStatus.FAILURE, TaskStatus.DEAD),
        timeout=timeout,
        what=f"task {handle.id} ({handle.task_name}) to fail for good",
    )


def queued_ids(client: redis.Redis, queue_name: str) -> list[str]:
    """Task ids of the messages waiting in ``queue_name``, not yet fetched by any worker."""
    key = keys.DEFAULT.broker_queue(queue_name)
    return _message_ids(client, keys.DEFAULT.broker_messages(queue_name), list(client.lrange(key, 0, -1)))
