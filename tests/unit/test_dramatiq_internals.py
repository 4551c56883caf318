"""What aury-tasks relies on inside Dramatiq is still what it was built on.

aury-tasks overrides or depends on a few private parts of Dramatiq (pinned to its minor
version in pyproject.toml). If an upgrade changes one of them, this test fails and names it:
read the new upstream code, adapt the module named in the message, then update the digest.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq import asyncio as dramatiq_asyncio
from dramatiq import cli as dramatiq_cli
from dramatiq import worker
from dramatiq.brokers import rabbitmq as rabbitmq_broker  # pika: a dev dependency
from dramatiq.brokers import redis as redis_broker
from dramatiq.middleware import retries
from dramatiq.rate_limits import rate_limiter, window

import aury_tasks
from aury_tasks.middleware.context import context_of, existing_context

#: Where every use of a private part of Dramatiq is (and nowhere else in aury_tasks).
INTERNALS = "aury_tasks/broker/redis/dramatiq_internals.py"
#: Its RabbitMQ twin (apart: pika is imported only where a RabbitMQ broker is built).
RABBITMQ_INTERNALS = "aury_tasks/broker/rabbitmq_internals.py"
#: The only modules that may use a private part of Dramatiq.
INTERNALS_MODULES = (INTERNALS, RABBITMQ_INTERNALS)
RABBIT = RABBITMQ_INTERNALS

#: (what, object, digest of its source, what of ours depends on it)
RELIED_ON: list[tuple[str, Callable[..., Any], str, str]] = [
    ("RedisBroker.__getattr__", redis_broker.RedisBroker.__getattr__, "f4b5aa5f13074883",
     f"{INTERNALS} RoutedRedisBroker._dispatch: every do_<command> goes through _dispatch"),
    ("RedisBroker._dispatch", redis_broker.RedisBroker._dispatch, "ee77793d07f17bbe",
     f"{INTERNALS} RoutedRedisBroker._dispatch replaces it; RoutedRedisBroker.dispatch_call builds its "
     "script arguments"),
    ("RedisBroker._max_unpack_size", redis_broker.RedisBroker._max_unpack_size, "502754eaaa6b949e",
     f"{INTERNALS} RoutedRedisBroker.max_unpack_size (the fetch's batch size, dispatch_call's argument)"),
    ("RedisBroker.enqueue", redis_broker.RedisBroker.enqueue, "e1590deaae2f786a",
     "aury_tasks/middleware/ledger.py: before_enqueue runs before the message is encoded; "
     "aury_tasks/broker/redis/base.py FastRedisBroker.enqueue and prepare_for_enqueue do what it does"),
    ("RedisBroker.flush", redis_broker.RedisBroker.flush, "40e5cecf364d6457",
     "aury_tasks/broker/redis/broker.py AuryRedisBroker.flush: Dramatiq purges the list and the delay queue"),
    ("_RedisConsumer.__init__", redis_broker._RedisConsumer.__init__, "c626986d71660eb6",
     f"{INTERNALS} WakingRedisConsumer: message_cache, queued_message_ids, timeout"),
    ("_RedisConsumer.outstanding_message_count", redis_broker._RedisConsumer.outstanding_message_count.fget,
     "e428a98a5f25c927",
     f"{INTERNALS} WakingRedisConsumer: the prefetch window is counted as Dramatiq does"),
    ("_RedisConsumer.ack", redis_broker._RedisConsumer.ack, "a44cb9ea8b6c3f92",
     f"{INTERNALS} WakingRedisConsumer.ack replaces it (the ack goes to the process's "
     "AckSender; the message leaves queued_message_ids as Dramatiq does it)"),
    ("_RedisConsumer.nack", redis_broker._RedisConsumer.nack, "573d58e9c2a0765e",
     f"{INTERNALS} RoutedRedisBroker.nack_now: a nack is one do_nack keyed by redis_message_id "
     "(aury_tasks/broker/redis/base.py FastRedisBroker.nack_now: the ledger's writes ride on it)"),
    ("_RedisConsumer.requeue", redis_broker._RedisConsumer.requeue, "4d8aac265b34222e",
     f"{INTERNALS} RoutedRedisBroker.requeue_now: a requeue is one do_requeue"),
    ("_RedisConsumer.__next__", redis_broker._RedisConsumer.__next__, "b8245bc4ab8044d6",
     f"{INTERNALS} WakingRedisConsumer.__next__ replaces it (same cache and decoding; "
     "aury_tasks/broker/redis/consumer.py: a DecodeError leaves __next__ after the data was taken off the "
     "cache)"),
    ("ConsumerThread.run", worker.ConsumerThread.run, "6003fa99242662db",
     f"{INTERNALS} WakingRedisConsumer: a None from __next__ lets the thread send due "
     "delayed messages and see its stop and pause flags"),
    ("RedisBroker.consumer_class", redis_broker.RedisBroker.consumer_class.fget, "43d97c3b7d756fe2",
     "aury_tasks/broker/redis/broker.py AuryRedisBroker.consumer_class"),
    ("Message.decode", dramatiq.Message.decode.__func__, "92d6a76a8603cad4",
     "aury_tasks/broker/redis/consumer.py and dead_letters.py: what cannot be decoded raises DecodeError "
     "with its data"),
    ("MessageProxy.stuff_exception", dramatiq.broker.MessageProxy.stuff_exception, "9415400494d554db",
     f"{INTERNALS} stuffed_exception reads what it stuffed (aury_tasks/middleware/ledger.py: a dead "
     "message's reason)"),
    ("ConsumerThread.post_process_message", worker.ConsumerThread.post_process_message, "34d4806bcc9eca81",
     "aury_tasks/middleware/ledger.py: before_ack/before_nack run on the thread that acks"),
    ("ConsumerThread.handle_delayed_messages", worker.ConsumerThread.handle_delayed_messages,
     "357b6b23675bc029",
     f"{INTERNALS} on_consumer_thread (aury_tasks/middleware/ledger.py: a due delayed message is "
     "re-enqueued by the consumer thread); aury_tasks/broker/redis/base.py: it is acked on the consumer "
     "that handed it out"),
    ("ConsumerThread.handle_message", worker.ConsumerThread.handle_message, "8b12bea8fc89d656",
     "aury_tasks/broker/redis/priority.py: a worker orders the messages it fetched by actor.priority only"),
    ("WorkerThread.process_message", worker.WorkerThread.process_message, "6b29f80967049804",
     "aury_tasks/middleware/ledger.py: hook order, SkipMessage handling; "
     f"{INTERNALS} WORKER_THREAD_LOGGER: where a skipped message is logged"),
    ("Worker.start", worker.Worker.start, "e7ddb0d997c7555c",
     f"{INTERNALS} LaneableWorker: start calls _add_consumer per queue and _add_worker per thread"),
    ("Worker._add_consumer", worker.Worker._add_consumer, "79ec1f676e9b774f",
     f"{INTERNALS} LaneableWorker.add_consumer and start_consumer (aury_tasks/worker/lanes.py)"),
    ("Worker._add_worker", worker.Worker._add_worker, "cafe781cfd6afeb7",
     f"{INTERNALS} LaneableWorker.add_worker_thread and start_worker_thread (aury_tasks/worker/lanes.py)"),
    ("Worker.stop", worker.Worker.stop, "b07f970155fef59e",
     "aury_tasks/worker/lanes.py QueueLimitedWorker.stop does what it does for every lane"),
    ("Worker.join", worker.Worker.join, "f86dce60a47ab1f3",
     "aury_tasks/worker/lanes.py QueueLimitedWorker.join waits for every lane as it does"),
    ("cli.main", dramatiq_cli.main, "91062c7807ec6dbd",
     f"{INTERNALS} start_cli_processes_with and replace_cli_signal_unblocking: main starts its worker "
     "processes with multiprocessing.Process(target=worker_process) and unblocks the signals through "
     "try_unblock_signals, both looked up in its module (aury_tasks/worker/recycling.py)"),
    ("cli.worker_process", dramatiq_cli.worker_process, "1a5485529149ead9",
     f"{INTERNALS} build_cli_workers_with: the worker class is looked up as the module's Worker "
     "(aury_tasks/worker/process.py builds the worker with lanes through it); "
     "aury_tasks/worker/recycling.py runs it in a process of its own"),
    ("RateLimiter.acquire", rate_limiter.RateLimiter.acquire, "e814536306536803",
     f"{INTERNALS} WindowRateLimiterBase: acquire() runs _acquire"),
    ("WindowRateLimiter._acquire", window.WindowRateLimiter._acquire, "cad4eb17d2fc77f3",
     f"{INTERNALS} WindowRateLimiterBase._acquire replaces it (aury_tasks/middleware/limits.py "
     "WindowLimiter.try_acquire)"),
    ("Retries.after_process_message", retries.Retries.after_process_message, "54139ce3ab7792bd",
     "aury_tasks/middleware/ledger.py: a retry is a re-enqueue inside the failed attempt's except block"),
    ("Broker.emit_before", dramatiq.Broker.emit_before, "583dfd2a7233ae1a",
     "aury_tasks/broker/redis/signals.py HandledSignals.emit_before does what it does for the middleware "
     "with the hook"),
    ("Broker.emit_after", dramatiq.Broker.emit_after, "5cdc14acc687e8c7",
     "aury_tasks/broker/redis/signals.py HandledSignals.emit_after does what it does for the middleware "
     "with the hook"),
    ("RabbitmqBroker._build_queue_arguments", rabbitmq_broker.RabbitmqBroker._build_queue_arguments,
     "7551172b30346a65",
     f"{RABBIT} RabbitmqQueueArguments: the queue's arguments, as a dict, go through queue_arguments"),
    ("RabbitmqBroker._declare_queue", rabbitmq_broker.RabbitmqBroker._declare_queue, "9ebebb7082f01042",
     f"{RABBIT} RabbitmqQueueArguments: a queue is declared with _build_queue_arguments"),
    ("RabbitmqBroker._declare_dq_queue", rabbitmq_broker.RabbitmqBroker._declare_dq_queue, "8771e365f249ab5d",
     f"{RABBIT} RabbitmqQueueArguments._declare_dq_queue replaces it (the same declare, Dramatiq's "
     "_build_queue_arguments through delay_queue_arguments)"),
    ("RabbitmqBroker.consumer_class", rabbitmq_broker.RabbitmqBroker.consumer_class.fget, "28a72bd330e935f6",
     "aury_tasks/broker/rabbitmq.py AuryRabbitmqBroker.consumer_class (Dramatiq's on classic queues)"),
    ("_RabbitmqConsumer.__init__", rabbitmq_broker._RabbitmqConsumer.__init__, "df5dd7aa8bf4dcd6",
     f"{RABBIT} counting_rabbitmq_consumer: self.iterator is the pika consume() iterator"),
    ("_RabbitmqConsumer.__next__", rabbitmq_broker._RabbitmqConsumer.__next__, "75ac0236fc2754b8",
     f"{RABBIT} counting_rabbitmq_consumer: one next(self.iterator) per call, (method, properties, "
     "body) triples, and the message proxy it returns"),
    ("RabbitmqBroker._declare_xq_queue", rabbitmq_broker.RabbitmqBroker._declare_xq_queue, "435cb6fafa76ca3d",
     f"{RABBIT} RabbitmqQueueArguments._declare_xq_queue replaces it (the same declare, its "
     "arguments through dead_letter_queue_arguments)"),
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
        f" {INTERNALS} RoutedRedisBroker.dispatch_call, the key layout its FETCH and ENQUEUE"
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


# Every private name of Dramatiq in one module

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "aury_tasks"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name != "_"


def _private_names_defined_in(files: list[Path]) -> set[str]:
    """The private names these files define: functions, classes, globals, attributes stored."""
    names: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return {name for name in names if _is_private(name)}


def _our_modules() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(ROOT).as_posix() not in INTERNALS_MODULES
    ]


def _private_uses(path: Path, dramatiq_private: set[str]) -> list[str]:
    """Where ``path`` imports a private name from Dramatiq, or reads one of ``dramatiq_private``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "dramatiq":
            modules = (node.module or "").split(".")
            found += [f"{where} imports {alias.name}" for alias in node.names if _is_private(alias.name)]
            found += [f"{where} imports {node.module}" for part in modules if _is_private(part)]
        elif isinstance(node, ast.Import):
            found += [
                f"{where} imports {alias.name}"
                for alias in node.names
                if alias.name.split(".")[0] == "dramatiq" and any(map(_is_private, alias.name.split(".")))
            ]
        elif isinstance(node, ast.Attribute) and node.attr in dramatiq_private:
            found.append(f"{where} reads .{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "setattr", "hasattr", "delattr"}
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in dramatiq_private
        ):
            found.append(f"{where} {node.func.id}(…, {node.args[1].value!r})")
    return found


def test_no_module_but_the_internals_one_uses_a_private_name_of_dramatiq() -> None:
    # Given the private names Dramatiq defines, less those aury-tasks defines for itself elsewhere
    # (a name of ours that Dramatiq happens to use too, such as _release, is not Dramatiq's there)
    dramatiq_files = sorted(Path(dramatiq.__file__).parent.rglob("*.py"))
    ours = _our_modules()
    dramatiq_private = _private_names_defined_in(dramatiq_files) - _private_names_defined_in(ours)

    # When every module of aury_tasks but the internals one is read
    uses = [use for path in ours for use in _private_uses(path, dramatiq_private)]

    # Then none imports or reads one: it belongs behind a name in the internals module
    assert not uses, f"private parts of Dramatiq used outside {INTERNALS_MODULES}: {uses}"


def test_no_class_but_those_of_the_internals_module_overrides_a_private_member_of_dramatiq() -> None:
    # Given every class of aury_tasks outside the internals module
    internals = {module.removesuffix(".py").replace("/", ".") for module in INTERNALS_MODULES}
    overrides = []
    for module_info in pkgutil.walk_packages(aury_tasks.__path__, "aury_tasks."):
        if module_info.name.endswith("__main__") or module_info.name in internals:
            continue
        module = importlib.import_module(module_info.name)
        classes = [c for c in vars(module).values() if inspect.isclass(c) and c.__module__ == module.__name__]

        # When its private members are compared with those of the Dramatiq classes it derives from
        overrides += [override for cls in classes for override in _private_overrides(cls)]

    # Then none replaces one (the override goes in the internals module, behind a public method)
    assert not overrides, f"private members of Dramatiq overridden outside {INTERNALS_MODULES}: {overrides}"


#: Class attributes Dramatiq itself writes on the class of the instance at run time, so that a
#: subclass gets its own copy once a broker of it has run (RedisBroker._max_unpack_size caches the
#: server's Lua stack size on ``type(self)``): not overrides of ours.
DRAMATIQ_CLASS_CACHES = frozenset({"_max_unpack_size_val"})


def _private_overrides(cls: type) -> list[str]:
    """The private members of Dramatiq's classes that ``cls`` (a class of ours) defines again."""
    bases = [base for base in cls.__mro__[1:] if base.__module__.split(".")[0] == "dramatiq"]
    mine = [
        name for name in vars(cls)
        if _is_private(name)
        and not name.startswith("_abc_")  # (ABC's own)
        and name not in DRAMATIQ_CLASS_CACHES
    ]  # fmt: skip
    return [f"{cls.__module__}.{cls.__qualname__}.{name} overrides {base.__qualname__}'s"
            for name in mine for base in bases if name in vars(base)]  # fmt: skip
