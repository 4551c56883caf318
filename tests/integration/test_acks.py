"""Acknowledgements sent in batches by the worker process's AckSender, against a real Redis.

The worker's side (a stop sends every acknowledgement, a killed worker's tasks run again) is in
``test_worker_lifecycle.py`` and ``test_redelivery.py``; here the sender itself.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis
from loguru import logger

from aury_tasks.broker.redis.acks import AckSender
from aury_tasks.redis.scripts import LuaScript, Write

from .conftest import Restartable
from .events import wait_until

# Stands for an acknowledgement: counts the call and records its id.
COUNT = LuaScript("""
redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
return ARGV[1]
""")
BROKEN = LuaScript("return redis.call('NO-SUCH-COMMAND')")


def _ack(item: str) -> Write:
    return Write(COUNT, ["acks:count", "acks:ids"], [item])


@pytest.fixture
def sender(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    started = AckSender(client)
    started.start()
    yield started
    started.stop(5)
    client.close()


def test_acks_from_many_threads_are_each_sent_once_in_fewer_round_trips(
    sender: AckSender, redis_client: redis.Redis
) -> None:
    # Given 8 threads that each hand over 300 acknowledgements, each with a callback and a reply reader
    sent: list[str] = []
    replies: list[str] = []

    def hand_over(thread: int) -> None:
        for i in range(300):
            item = f"{thread}-{i}"
            write = _ack(item)
            write.on_reply = lambda reply: replies.append(reply.decode())
            sender.submit([write], lambda item=item: sent.append(item))

    threads = [threading.Thread(target=hand_over, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # When the sender is flushed
    assert sender.flush(10)

    # Then every one ran once, its callbacks were called once, and they went in fewer round trips
    expected = sorted(f"{t}-{i}" for t in range(8) for i in range(300))
    assert redis_client.get("acks:count") == "2400"
    assert sorted(redis_client.lrange("acks:ids", 0, -1)) == expected
    assert sorted(sent) == expected
    assert sorted(replies) == expected
    assert sender.acks_sent == 2400
    assert sender.batches_sent < 2400


def test_one_ack_failing_does_not_keep_the_others_of_its_batch_from_redis(
    sender: AckSender, redis_client: redis.Redis
) -> None:
    # Given a batch where one acknowledgement's script fails (the sender is busy while it fills up)
    errors: list[str] = []
    sink = logger.add(lambda message: errors.append(str(message)), level="ERROR")
    sent: list[str] = []
    gate = threading.Event()
    sender.submit([Write(LuaScript("return 1"), [], [], on_reply=lambda reply: gate.wait(5))])
    try:
        for item in ("a", "b"):
            sender.submit([_ack(item)], lambda item=item: sent.append(item))
        sender.submit([Write(BROKEN, [], [])], lambda: sent.append("broken"))
        sender.submit([_ack("c")], lambda: sent.append("c"))
        gate.set()

        # When it is sent
        assert sender.flush(10)
    finally:
        logger.remove(sink)

    # Then the others were applied once and called back, and the failure was logged in one line
    assert redis_client.lrange("acks:ids", 0, -1) == ["a", "b", "c"]
    assert sent == ["a", "b", "c"]
    assert len(errors) == 1 and "could not acknowledge a message" in errors[0]


def test_acks_handed_over_while_redis_is_down_are_sent_once_it_is_back(private: Restartable) -> None:
    # Given a sender whose Redis stops
    client = redis.Redis.from_url(private.url)
    sender = AckSender(client)
    sender.start()
    sender.submit([_ack("before")])
    assert sender.flush(5)
    private.stop()

    # When acknowledgements are handed over while it is down, and it comes back 1.5 s later
    sent: list[str] = []
    for item in ("during-1", "during-2"):
        sender.submit([_ack(item)], lambda item=item: sent.append(item))
    wait_until(lambda: not sender.connected, timeout=5, what="the sender to notice Redis is gone")
    assert sent == []
    time.sleep(1.5)
    private.start()

    # Then they are sent once Redis answers again, each once (AOF kept the first)
    wait_until(lambda: len(sent) == 2, timeout=15, what="the acknowledgements to be sent")
    check = redis.Redis.from_url(private.url, decode_responses=True)
    assert check.lrange("acks:ids", 0, -1) == ["before", "during-1", "during-2"]
    assert sender.connected
    sender.stop(5)
    check.close()
    client.close()


def test_stop_sends_what_waits_then_ends_the_thread(redis_url: str, redis_client: redis.Redis) -> None:
    # Given a sender with acknowledgements just handed over
    client = redis.Redis.from_url(redis_url)
    sender = AckSender(client)
    sender.start()
    for i in range(50):
        sender.submit([_ack(str(i))])

    # When it is stopped
    sender.stop(10)
    sender.join(5)

    # Then each was sent, and the thread has ended
    assert redis_client.get("acks:count") == "50"
    assert not sender.is_alive()
    client.close()
