"""Following a pub/sub channel from a thread, across lost connections.

A watcher (the worker's cancel watcher, the scheduler's change feed) subscribes to one channel,
then catches up on what it may have missed while it was not subscribed, then hands each message
on. When Redis goes away it says so (:mod:`aury_tasks.redis.outage`), waits a second and starts
over, catch-up included, so no message published while it was away is missed for long.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import redis

from .outage import redis_back, redis_lost


def follow_channel(
    client: redis.Redis,
    channel: str,
    *,
    stopping: threading.Event,
    caught_up: Callable[[], None],
    received: Callable[[str], None],
    poll_seconds: float,
    lost: str,
) -> None:
    """Hand every message of ``channel`` to ``received`` until ``stopping`` is set.

    Parameters:
      client: the Redis client to subscribe with.
      channel: the channel's key (from :mod:`aury_tasks.core.keys`).
      stopping: set by the owner to end the loop (checked every ``poll_seconds``).
      caught_up: called after each (re)subscription, to load what a message may have been missed for.
      received: called with each message's data.
      poll_seconds: how long one wait for a message lasts.
      lost: the watcher's name in the lines that say Redis was lost (the error follows, redacted).
    """
    while not stopping.is_set():
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(channel)
            caught_up()
            redis_back(lost)
            while not stopping.is_set():
                message = pubsub.get_message(timeout=poll_seconds)
                if message is not None and message.get("type") == "message":
                    received(str(message["data"]))
        except redis.RedisError as exc:
            redis_lost(lost, exc)
            stopping.wait(1.0)
        finally:
            pubsub.close()
