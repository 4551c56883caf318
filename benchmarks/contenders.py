"""The contenders of ``run.py``: what a contender is, and the two Dramatiq ones.

Every contender registers the same two sync tasks under the same names on the same queue name,
in its own database of the one private Redis, and runs its worker through its own CLI. Raw
Dramatiq and aury-tasks run the same worker concurrency through Dramatiq's CLI (``dramatiq`` for
raw, ``aum worker`` for aury, which calls into it) and differ only in what each adds on its own
path:

* raw: ``RedisBroker`` with Dramatiq's default middleware plus ``AsyncIO`` (aury always has it),
  tasks declared with ``@dramatiq.actor`` and sent with ``actor.send``;
* aury: the broker ``TaskManager`` builds (``AuryRedisBroker``, aury's middleware and defaults),
  tasks declared with ``@tm.conditional_task``, sent with ``Task.send`` and, for the bulk
  enqueue rate, ``Task.send_many``. Its worker holds 4 messages per thread (``aum worker
  --prefetch``'s default) where Dramatiq's holds 2: each runs with its own default.

The peers (Celery, RQ, taskiq) are in ``peers.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO, default_middleware

from aury_tasks import TaskManager, TaskSettings
from aury_tasks.core import keys
from aury_tasks.core.status import TaskStatus

#: The queue every contender uses, and the names every contender registers its two tasks under.
QUEUE = "bench"
NOOP_ACTOR = "bench.noop"
LATENCY_ACTOR = "bench.latency"
#: Raw Dramatiq's own default namespace; aury-tasks uses ``keys.DEFAULT.prefix``.
RAW_NAMESPACE = "dramatiq"
#: The Redis database of each contender (``aury`` on 0, the default it is used with).
DATABASES = {"aury": 0, "raw": 1, "celery": 2, "rq": 3, "taskiq": 4}

# The worker-side task bodies, written to the run's temporary directory with each contender's
# declarations. The bodies are the same code for every contender.
TASK_BODIES = """
_results = None


def _record(key, submitted):
    started = time.time()
    global _results
    if _results is None:
        _results = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    _results.rpush(key, repr((started - submitted) * 1000.0))
"""

_TASKS = """

@{decorator}(queue_name="{queue}", actor_name="{noop}")
def noop():
    pass


@{decorator}(queue_name="{queue}", actor_name="{latency}")
def latency(submitted, key):
    _record(key, submitted)
"""

RAW_WORKER_MODULE = (
    '''"""Raw Dramatiq side of the benchmark: Dramatiq's default middleware plus AsyncIO."""
import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO, default_middleware

broker = RedisBroker(
    url=os.environ["BENCH_REDIS_URL"],
    namespace=os.environ["BENCH_RAW_NAMESPACE"],
    middleware=[m() for m in default_middleware] + [AsyncIO()],
)
dramatiq.set_broker(broker)
'''
    + TASK_BODIES
    + _TASKS.format(decorator="dramatiq.actor", queue=QUEUE, noop=NOOP_ACTOR, latency=LATENCY_ACTOR)
)

AURY_WORKER_MODULE = (
    '''"""aury-tasks side of the benchmark, found by ``aum worker --modules``."""
import os
import time

import redis

from aury_tasks import TaskManager

tm = TaskManager.get_instance()
'''
    + TASK_BODIES
    + _TASKS.format(decorator="tm.conditional_task", queue=QUEUE, noop=NOOP_ACTOR, latency=LATENCY_ACTOR)
)


def _no_dead_letters(client: redis.Redis) -> int:
    return 0


def _always_settled(client: redis.Redis) -> bool:
    return True


#: Minutes back that :func:`_aury_settled` reads statistics buckets (a round's drain and latency
#: phases end well within them).
SETTLE_MINUTES = 10


def _aury_settled(client: redis.Redis) -> bool:
    """Whether aury-tasks' worker has added the index entries of the tasks it ran (at its next
    heartbeat) and written their statistics counts (once a second): every task a final status
    index holds is counted in the minute buckets. One command at a time, so the harness's
    client counts them all."""
    if client.llen(keys.DEFAULT.unindexed()):
        return False
    finals = [status.value for status in TaskStatus if status.is_final]
    ended = sum(int(client.zcard(keys.DEFAULT.status_index(status))) for status in finals)
    minute = int(time.time() // 60)
    counted = 0
    for bucket in range(minute - SETTLE_MINUTES, minute + 1):
        counts = client.hgetall(keys.DEFAULT.stats_bucket("m", bucket))
        counted += sum(int(counts.get(status.encode(), 0)) for status in finals)
    return counted >= ended


@dataclass
class Side:
    """One contender: how the harness sends to it, starts its worker and sees its progress."""

    #: A short key: ``raw``, ``aury``, ``celery``, ``rq`` or ``taskiq``.
    name: str
    #: The Redis URL of the contender's database: its messages, and the latency results.
    url: str
    #: Send one no-op task: the producer path being measured.
    send_noop: Callable[[], object]
    #: Send one latency task with its submit time and the Redis list it records to.
    send_latency: Callable[[float, str], object]
    #: The worker command line and its environment.
    worker_argv: list[str]
    worker_env: dict[str, str]
    #: Close the harness-side broker.
    close: Callable[[], None]
    #: Tasks sent and not yet done, read with a client on ``url``.
    remaining: Callable[[redis.Redis], int]
    #: Messages that failed for good (dead-lettered): must stay 0.
    dead_letters: Callable[[redis.Redis], int] = _no_dead_letters
    #: The column header.
    label: str = ""
    #: Send ``n`` no-op tasks one by one (``send_noop`` ``n`` times unless the contender's
    #: producer is better driven otherwise, as taskiq's from one event loop run).
    send_noops: Callable[[int], None] | None = None
    #: Send ``n`` no-op tasks through the contender's bulk API, if it has one.
    send_bulk: Callable[[int], None] | None = None
    #: Drop the tasks still waiting in the queue (a peer's drain stopped by the time budget).
    discard_waiting: Callable[[redis.Redis], None] | None = None
    #: Worker processes started by ``worker_argv`` (the idle command rate is given per process).
    worker_processes: int = 1
    #: Descendant processes that exited count towards the worker's CPU (RQ's forked work horses).
    reaped_cpu: bool = False
    #: Whether the worker has finished the deferred work of the tasks it ran (read before its
    #: idle commands are counted): aury-tasks' ledger index entries, added at the worker's next
    #: heartbeat after it ran tasks (see ``RedisLedger.catch_up``), and its statistics counts,
    #: written once a second (``aury_tasks/ledger/tally.py``).
    settled: Callable[[redis.Redis], bool] = _always_settled

    def __post_init__(self) -> None:
        self.label = self.label or self.name
        if self.send_noops is None:
            send = self.send_noop

            def send_noops(n: int) -> None:
                for _ in range(n):
                    send()

            self.send_noops = send_noops


def database_url(url: str, name: str) -> str:
    """The server ``url`` (``redis://host:port/0``) with the database of contender ``name``."""
    return f"{url.rsplit('/', 1)[0]}/{DATABASES[name]}"


def dramatiq_side(name: str, url: str, namespace: str, **fields: Any) -> Side:
    """A contender on Dramatiq's Redis broker: progress is read from Dramatiq's own keys.

    ``<namespace>:<queue>.msgs`` is Dramatiq's hash of the queue's not-yet-acknowledged messages
    (see its ``dispatch.lua``): a message stays in it from enqueue to ack, so its length is what
    is left to do. ``<namespace>:<queue>.XQ`` is the queue's dead-letter set.
    """
    messages_key, dead_letter_key = f"{namespace}:{QUEUE}.msgs", f"{namespace}:{QUEUE}.XQ"
    return Side(
        name=name,
        url=url,
        remaining=lambda client: int(client.hlen(messages_key)),
        dead_letters=lambda client: int(client.zcard(dead_letter_key)),
        **fields,
    )


def write_worker_modules(workdir: Path) -> Path:
    """Write both Dramatiq task modules under ``workdir``; return the ``--modules`` directory for aury."""
    (workdir / "bench_raw_tasks.py").write_text(RAW_WORKER_MODULE)
    modules_dir = workdir / "bench_modules"
    (modules_dir / "bench").mkdir(parents=True)
    (modules_dir / "bench" / "tasks.py").write_text(AURY_WORKER_MODULE)
    return modules_dir


def make_raw_side(url: str, workdir: Path, args: argparse.Namespace, env: dict[str, str]) -> Side:
    """Raw Dramatiq: a ``RedisBroker`` in this process, ``dramatiq`` CLI for the worker."""
    url = database_url(url, "raw")
    broker = RedisBroker(
        url=url, namespace=RAW_NAMESPACE, middleware=[m() for m in default_middleware] + [AsyncIO()]
    )

    def noop() -> None:
        pass

    def latency(submitted: float, key: str) -> None:
        pass

    noop_actor: Any = dramatiq.actor(broker=broker, queue_name=QUEUE, actor_name=NOOP_ACTOR)(noop)
    latency_actor: Any = dramatiq.actor(broker=broker, queue_name=QUEUE, actor_name=LATENCY_ACTOR)(latency)
    argv = [
        sys.executable, "-m", "dramatiq", "bench_raw_tasks", "--path", str(workdir),
        "--processes", str(args.processes), "--threads", str(args.threads), "--queues", QUEUE,
    ]  # fmt: skip
    return dramatiq_side(
        "raw",
        url,
        RAW_NAMESPACE,
        label="raw dramatiq",
        send_noop=noop_actor.send,
        send_latency=latency_actor.send,
        worker_argv=argv,
        worker_env={**env, "BENCH_REDIS_URL": url, "BENCH_RAW_NAMESPACE": RAW_NAMESPACE},
        worker_processes=args.processes,
        close=broker.close,
    )


def make_aury_side(
    url: str, workdir: Path, modules_dir: Path, args: argparse.Namespace, env: dict[str, str]
) -> Side:
    """aury-tasks: a producer-mode ``TaskManager`` in this process, ``aum worker`` for the worker."""
    url = database_url(url, "aury")
    data_dir = str(workdir / ".aum")
    settings = TaskSettings.load(_env_file=None, broker_url=url, data_dir=data_dir)
    tm = TaskManager("benchmark", settings=settings)
    tm.initialize(run_mode="producer")

    @tm.conditional_task(queue_name=QUEUE, actor_name=NOOP_ACTOR)
    def noop() -> None:
        pass

    @tm.conditional_task(queue_name=QUEUE, actor_name=LATENCY_ACTOR)
    def latency(submitted: float, key: str) -> None:
        pass

    def send_bulk(n: int) -> None:
        noop.send_many([()] * n)

    argv = [
        sys.executable, "-m", "aury_tasks.cli", "worker", "--modules", str(modules_dir),
        "--processes", str(args.processes), "--concurrency", str(args.threads), "--queues", QUEUE,
    ]  # fmt: skip
    return dramatiq_side(
        "aury",
        url,
        keys.DEFAULT.prefix,
        label="aury-tasks",
        send_noop=noop.send,
        send_latency=latency.send,
        send_bulk=send_bulk,
        worker_argv=argv,
        worker_env={**env, "BENCH_REDIS_URL": url, "TASK_BROKER_URL": url, "TASK_DATA_DIR": data_dir},
        worker_processes=args.processes,
        close=tm.close,
        settled=_aury_settled,
    )
