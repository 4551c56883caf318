"""What aury-tasks relies on inside Dramatiq is still what it was built on.

aury-tasks overrides or depends on a few private parts of Dramatiq (pinned to its minor
version in pyproject.toml). If an upgrade changes one of them, this test fails and names it:
read the new upstream code, adapt the module named in the message, then update the digest.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import dramatiq
import pytest
from dramatiq import asyncio as dramatiq_asyncio
from dramatiq import worker
from dramatiq.brokers import redis as redis_broker
from dramatiq.middleware import retries

from aury_tasks.middleware.context import context_of, existing_context

#: (what, object, digest of its source, what of ours depends on it)
RELIED_ON: list[tuple[str, Callable[..., Any], str, str]] = [
    ("RedisBroker.__getattr__", redis_broker.RedisBroker.__getattr__, "f4b5aa5f13074883",
     "aury_tasks/broker/redis/base.py FastRedisBroker._dispatch: every do_<command> goes through _dispatch"),
    ("RedisBroker._dispatch", redis_broker.RedisBroker._dispatch, "ee77793d07f17bbe",
     "aury_tasks/broker/redis/base.py FastRedisBroker._dispatch replaces it (script arguments rebuilt)"),
    ("RedisBroker.enqueue", redis_broker.RedisBroker.enqueue, "e1590deaae2f786a",
     "aury_tasks/middleware/ledger.py: before_enqueue runs before the message is encoded; "
     "aury_tasks/broker/redis/base.py FastRedisBroker.enqueue and prepare_for_enqueue do what it does"),
    ("RedisBroker.flush", redis_broker.RedisBroker.flush, "40e5cecf364d6457",
     "aury_tasks/broker/redis/broker.py AuryRedisBroker.flush: Dramatiq purges the list and the delay queue"),
    ("_RedisConsumer.__init__", redis_broker._RedisConsumer.__init__, "c626986d71660eb6",
     "aury_tasks/broker/redis/base.py WakingRedisConsumer: message_cache, queued_message_ids, timeout"),
    ("_RedisConsumer.outstanding_message_count", redis_broker._RedisConsumer.outstanding_message_count.fget,
     "e428a98a5f25c927",
     "aury_tasks/broker/redis/base.py WakingRedisConsumer: the prefetch window is counted as Dramatiq does"),
    ("_RedisConsumer.ack", redis_broker._RedisConsumer.ack, "a44cb9ea8b6c3f92",
     "aury_tasks/broker/redis/base.py WakingRedisConsumer.ack replaces it (the ack goes to the process's "
     "AckSender; the message leaves queued_message_ids as Dramatiq does it)"),
    ("_RedisConsumer.nack", redis_broker._RedisConsumer.nack, "573d58e9c2a0765e",
     "aury_tasks/broker/redis/riders.py: a nack is one dispatch keyed by redis_message_id"),
    ("_RedisConsumer.requeue", redis_broker._RedisConsumer.requeue, "4d8aac265b34222e",
     "aury_tasks/broker/redis/base.py FastRedisBroker._requeue: a requeue is one do_requeue"),
    ("_RedisConsumer.__next__", redis_broker._RedisConsumer.__next__, "b8245bc4ab8044d6",
     "aury_tasks/broker/redis/base.py WakingRedisConsumer.__next__ replaces it (same cache and decoding; "
     "aury_tasks/broker/redis/consumer.py: a DecodeError leaves __next__ after the data was taken off the "
     "cache)"),
    ("ConsumerThread.run", worker.ConsumerThread.run, "6003fa99242662db",
     "aury_tasks/broker/redis/base.py WakingRedisConsumer: a None from __next__ lets the thread send due "
     "delayed messages and see its stop and pause flags"),
    ("RedisBroker.consumer_class", redis_broker.RedisBroker.consumer_class.fget, "43d97c3b7d756fe2",
     "aury_tasks/broker/redis/broker.py AuryRedisBroker.consumer_class"),
    ("Message.decode", dramatiq.Message.decode.__func__, "92d6a76a8603cad4",
     "aury_tasks/broker/redis/consumer.py and dead_letters.py: what cannot be decoded raises DecodeError "
     "with its data"),
    ("ConsumerThread.post_process_message", worker.ConsumerThread.post_process_message, "34d4806bcc9eca81",
     "aury_tasks/middleware/ledger.py: before_ack/before_nack run on the thread that acks"),
    ("ConsumerThread.handle_delayed_messages", worker.ConsumerThread.handle_delayed_messages,
     "357b6b23675bc029",
     "aury_tasks/middleware/ledger.py: a due delayed message is re-enqueued by the consumer thread; "
     "aury_tasks/broker/redis/base.py: it is acked on the consumer that handed it out"),
    ("ConsumerThread.handle_message", worker.ConsumerThread.handle_message, "8b12bea8fc89d656",
     "aury_tasks/broker/redis/priority.py: a worker orders the messages it fetched by actor.priority only"),
    ("WorkerThread.process_message", worker.WorkerThread.process_message, "6b29f80967049804",
     "aury_tasks/middleware/ledger.py: hook order, SkipMessage handling"),
    ("Retries.after_process_message", retries.Retries.after_process_message, "54139ce3ab7792bd",
     "aury_tasks/middleware/ledger.py: a retry is a re-enqueue inside the failed attempt's except block"),
    ("Broker.emit_before", dramatiq.Broker.emit_before, "583dfd2a7233ae1a",
     "aury_tasks/broker/redis/signals.py HandledSignals.emit_before does what it does for the middleware "
     "with the hook"),
    ("Broker.emit_after", dramatiq.Broker.emit_after, "5cdc14acc687e8c7",
     "aury_tasks/broker/redis/signals.py HandledSignals.emit_after does what it does for the middleware "
     "with the hook"),
    ("EventLoopThread.run_coroutine", dramatiq_asyncio.EventLoopThread.run_coroutine, "a34785a24449bbc8",
     "aury_tasks/middleware/upkeep.py: an Interrupt cancels the running coroutine"),
]  # fmt: skip


def _digest(source: str | bytes) -> str:
    data = source.encode() if isinstance(source, str) else source
    return hashlib.sha256(data).hexdigest()[:16]


@pytest.mark.parametrize(("what", "target", "digest", "ours"), RELIED_ON, ids=[r[0] for r in RELIED_ON])
def test_dramatiq_code_we_rely_on_is_unchanged(what: str, target: Callable[..., Any], digest: str,
                                               ours: str) -> None:  # fmt: skip
    assert _digest(inspect.getsource(target)) == digest, (
        f"Dramatiq {dramatiq.__version__} changed {what}; check {ours}, then update the digest here"
    )


def test_the_redis_dispatch_script_is_unchanged() -> None:
    assert _digest(redis_broker._scripts["dispatch"]) == "ba4d872e4fb204eb", (
        f"Dramatiq {dramatiq.__version__} changed its Redis dispatch.lua; check the argument list in"
        " aury_tasks/broker/redis/base.py FastRedisBroker._script_args, the key layout its FETCH and ENQUEUE"
        " scripts share with it (list, .msgs hash, __acks__ sets, __heartbeats__; aury_tasks/core/keys.py),"
        " fetch popping from the list's head (aury_tasks/broker/redis/priority.py), and a command the script"
        " does not"
        " know ('maintain') running only the heartbeat and maintenance"
    )


def test_message_proxies_hold_a_context_of_their_own() -> None:
    # Given two proxies of one message (two deliveries)
    message = dramatiq.Message("q", "a", (), {}, {})
    first, second = dramatiq.broker.MessageProxy(message), dramatiq.broker.MessageProxy(message)

    # When a middleware notes something on the first
    context_of(first).deferred = True

    # Then the first keeps it, the second has a context of its own, and the proxy is as it was
    assert context_of(first) is context_of(first) and context_of(first).deferred
    assert existing_context(second) is None and not context_of(second).deferred
    assert first.failed is False and first.message_id == message.message_id
