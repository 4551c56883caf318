"""When the waking consumer fetches: after a wake-up, on its fallback, and as acks free its window.

The consumer runs against a broker in memory (its fetches and acks recorded) with an unstarted
:class:`~aury_tasks.broker.redis.wakeup.Waker`, which the tests drive by hand: its ``ready`` flag says
the wake subscription is active, and ``wake`` is what a wake message does.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.common import current_millis
from loguru import logger

from aury_tasks.broker.redis import dramatiq_internals
from aury_tasks.broker.redis.dramatiq_internals import WakingRedisConsumer
from aury_tasks.broker.redis.wakeup import Waker
from aury_tasks.core.keys import DEFAULT
from aury_tasks.redis.clock import ServerClock

QUEUE = "q"
#: The worker timeout (ms) the consumers get: how long one call waits at most.
TIMEOUT_MS = 10


class MemoryBroker:
    """What the consumer asks of its broker, in memory: one queue, its fetches and acks recorded."""

    heartbeat_timeout = 15_000
    keys = DEFAULT

    def __init__(self, server_ahead: float = 0.0) -> None:
        #: The server's clock: ``server_ahead`` seconds ahead of this process's (its ``time`` below).
        self.server_ahead = server_ahead
        self.clock = ServerClock(self)
        self.waiting: list[bytes] = []
        self.fetches: list[int] = []
        self.acked: list[str] = []
        self.waker = Waker(self)  # type: ignore[arg-type]  # never started

    def send(self, count: int, **options: Any) -> None:
        for _ in range(count):
            message = dramatiq.Message(
                queue_name=QUEUE, actor_name="noop", args=(), kwargs={}, options=options
            )
            self.waiting.append(message.copy(options={"redis_message_id": message.message_id}).encode())

    def time(self) -> tuple[int, int]:
        """What Redis's ``TIME`` answers: seconds and microseconds on the server's clock."""
        now = time.time() + self.server_ahead
        return int(now), int(now % 1 * 1_000_000)

    def do_fetch(self, queue_name: str, count: int) -> list[bytes]:
        self.fetches.append(count)
        taken, self.waiting = self.waiting[:count], self.waiting[count:]
        return taken

    def ack_calls(self, queue_name: str, redis_message_id: str) -> list[str]:
        return [redis_message_id]

    @property
    def acks(self) -> MemoryBroker:
        return self

    def submit(self, calls: list[str], on_sent: Any) -> None:
        """The acknowledgement thread's part, at once."""
        self.acked += calls
        on_sent()


@pytest.fixture
def broker() -> MemoryBroker:
    """A broker in memory whose wake subscription is active."""
    broker = MemoryBroker()
    broker.waker.ready.set()
    return broker


def consumer_of(broker: MemoryBroker, prefetch: int = 4) -> WakingRedisConsumer:
    return WakingRedisConsumer(broker, QUEUE, prefetch, TIMEOUT_MS)  # type: ignore[arg-type]


def test_an_idle_consumer_fetches_again_only_when_woken(broker: MemoryBroker) -> None:
    # Given a consumer that found its queue empty
    consumer = consumer_of(broker)
    assert next(consumer) is None
    assert len(broker.fetches) == 1

    # When it is called again and again, and another queue is woken
    broker.waker.wake("other")
    assert [next(consumer) for _ in range(5)] == [None] * 5

    # Then it fetched nothing more
    assert len(broker.fetches) == 1

    # ... until its own queue is woken, with a message there
    broker.send(1)
    broker.waker.wake(QUEUE)
    assert next(consumer) is not None
    assert len(broker.fetches) == 2


def test_an_idle_consumer_fetches_anyway_once_the_fallback_interval_has_passed(
    broker: MemoryBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a consumer that fetches on its own every 50 ms when idle, and that found its queue empty
    monkeypatch.setattr(dramatiq_internals, "IDLE_FETCH_INTERVAL", 0.05)
    consumer = consumer_of(broker)
    assert next(consumer) is None

    # When a message arrives without a wake-up (its signal was lost)
    broker.send(1)

    # Then the consumer gets it all the same, on its next fetch
    message = None
    for _ in range(100):  # 10 ms a call: at most a second
        if (message := next(consumer)) is not None:
            break
    assert message is not None
    assert len(broker.fetches) == 2


def test_before_the_subscription_is_active_an_idle_consumer_polls(broker: MemoryBroker) -> None:
    # Given a consumer whose process is not subscribed to wake-ups yet
    broker.waker.ready.clear()
    consumer = consumer_of(broker)

    # When it finds its queue empty, time after time
    calls = [next(consumer) for _ in range(3)]

    # Then it fetches at every call, as Dramatiq's consumer does (each waits the worker timeout)
    assert calls == [None] * 3
    assert len(broker.fetches) == 3


def test_with_its_window_full_a_consumer_fetches_again_once_half_of_it_is_free(
    broker: MemoryBroker,
) -> None:
    # Given a consumer with a window of 8 messages, all taken, and more waiting
    broker.send(20)
    consumer = consumer_of(broker, prefetch=8)
    held = [next(consumer) for _ in range(8)]
    assert broker.fetches == [8]

    # When the window is full, then when three messages are acknowledged
    assert next(consumer) is None
    for _ in range(3):
        consumer.ack(held.pop(0))
        assert next(consumer) is None

    # Then it fetched nothing more
    assert broker.fetches == [8]

    # ... and once a fourth one is acknowledged (half of the window), it fetches four
    consumer.ack(held.pop(0))
    assert next(consumer) is not None
    assert broker.fetches == [8, 4]


def test_a_consumer_that_drained_its_queue_fetches_what_arrives_while_its_window_has_room(
    broker: MemoryBroker,
) -> None:
    # Given a consumer with a window of 8 that took the 5 messages waiting (fewer than asked: the
    # queue is drained and, in Redis, the fetch left its idle marker), none acknowledged yet
    broker.send(5)
    consumer = consumer_of(broker, prefetch=8)
    held = [next(consumer) for _ in range(5)]
    assert None not in held
    assert next(consumer) is None
    assert broker.fetches == [8]

    # When two messages arrive and wake it, with less than half of its window free
    broker.send(2)
    broker.waker.wake(QUEUE)

    # Then it fetches them at once (its threads may be busy: the worker orders what it holds by
    # the task's priority, so a message left in Redis would miss that ordering)
    assert next(consumer) is not None
    assert next(consumer) is not None
    assert broker.fetches == [8, 3]


def test_a_consumer_holding_a_delayed_message_waits_no_longer_than_its_eta(broker: MemoryBroker) -> None:
    # Given a consumer of a delay queue holding a message due in 0.2 s
    broker.send(1, eta=current_millis() + 200)
    consumer = WakingRedisConsumer(broker, QUEUE, 4, 1000)  # type: ignore[arg-type]
    delayed = next(consumer)
    assert delayed is not None

    # Then it waits at most until that eta for a wake-up, not the worker timeout of 1 s
    assert 0 < consumer._wait_seconds() <= 0.2

    # ... and once the message went to its queue (acknowledged here), the worker timeout again
    consumer.ack(delayed)
    assert consumer._wait_seconds() == 1.0


def test_a_delayed_message_s_eta_is_handed_to_the_worker_on_this_host_s_clock() -> None:
    # Given a host whose clock is 30 s behind the Redis server's, and a message due in 10 s by
    # the server's clock (as every sender writes it)
    broker = MemoryBroker(server_ahead=30.0)
    broker.waker.ready.set()
    due = broker.clock.millis() + 10_000
    broker.send(1, eta=due)

    # When the consumer hands it to the worker
    delayed = next(WakingRedisConsumer(broker, QUEUE, 4, 1000))  # type: ignore[arg-type]

    # Then its eta is the moment this host's clock reads then: 10 s from now here, not 40 s
    assert delayed is not None
    assert delayed.options["eta"] == pytest.approx(due - 30_000, abs=1_000)


def test_a_fetch_that_cannot_reach_redis_is_reported_once_and_tried_again(
    broker: MemoryBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a consumer whose Redis is gone (a failover) for three fetches, with a message waiting
    monkeypatch.setattr(dramatiq_internals, "FETCH_RETRY_PAUSE", 0)
    logged: list[str] = []
    sink = logger.add(lambda line: logged.append(line.record["message"]), level="INFO")
    broker.send(1)
    fetch, failures = broker.do_fetch, [redis.ConnectionError("Connection refused")] * 3

    def unreachable(queue_name: str, count: int) -> list[bytes]:
        if failures:
            raise failures.pop()
        return fetch(queue_name, count)

    monkeypatch.setattr(broker, "do_fetch", unreachable)
    consumer = consumer_of(broker)
    try:
        # When the worker's consumer thread calls it meanwhile
        calls = [next(consumer) for _ in range(3)]
        # Then it raises nothing (Dramatiq's consumer thread would log a critical line and start a
        # new consumer 3 s later), logs one warning, and gets the message once Redis answers
        assert calls == [None] * 3
        message = next(consumer)
    finally:
        logger.remove(sink)
    assert message is not None
    assert [line for line in logged if "Redis" in line] == [
        "lost Redis (consumer of q), retrying until it answers: Connection refused",
        logged[-1],
    ]
    assert logged[-1].startswith("Redis answers again, after ")
