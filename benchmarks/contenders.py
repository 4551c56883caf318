"""The two contenders of ``run.py``: raw Dramatiq and aury-tasks, set up alike.

Both sides register the same two sync tasks under the same names on the same queue, run the
same worker concurrency through Dramatiq's CLI (``dramatiq`` for raw, ``aum worker`` for aury,
which calls into it), and differ only in what each adds on its own path:

* raw: ``RedisBroker`` with Dramatiq's default middleware plus ``AsyncIO`` (aury always has it),
  tasks declared with ``@dramatiq.actor`` and sent with ``actor.send``;
* aury: the broker ``TaskManager`` builds (``AuryRedisBroker``, aury's middleware and defaults),
  tasks declared with ``@tm.conditional_task`` and sent with ``Task.send``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AsyncIO, default_middleware

from aury_tasks import TaskManager, TaskSettings, keys

#: The queue both sides use, and the names both sides register their two tasks under.
QUEUE = "bench"
NOOP_ACTOR = "bench.noop"
LATENCY_ACTOR = "bench.latency"
#: Raw Dramatiq's own default namespace; aury-tasks uses ``keys.BROKER_NAMESPACE``.
RAW_NAMESPACE = "dramatiq"

# The worker-side task modules, written to the run's temporary directory. The task bodies are
# the same code on both sides; only the declarations differ.
_TASK_BODIES = """
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
    + _TASK_BODIES
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
    + _TASK_BODIES
    + _TASKS.format(decorator="tm.conditional_task", queue=QUEUE, noop=NOOP_ACTOR, latency=LATENCY_ACTOR)
)


@dataclass
class Side:
    """One contender: how the harness sends to it and how its worker is started."""

    #: ``raw`` or ``aury``.
    name: str
    #: The broker namespace, for the queue's Redis keys.
    namespace: str
    #: Send one no-op task: the producer path being measured.
    send_noop: Callable[[], object]
    #: Send one latency task with its submit time and the Redis list it records to.
    send_latency: Callable[[float, str], object]
    #: The worker command line and its environment.
    worker_argv: list[str]
    worker_env: dict[str, str]
    #: Close the harness-side broker.
    close: Callable[[], None]

    @property
    def messages_key(self) -> str:
        """Dramatiq's hash of the queue's not-yet-acknowledged messages (see its ``dispatch.lua``).

        A message stays in it from enqueue to ack, so its length is what is left to do.
        """
        return f"{self.namespace}:{QUEUE}.msgs"

    @property
    def dead_letter_key(self) -> str:
        """Dramatiq's dead-letter set of the queue: must stay empty."""
        return f"{self.namespace}:{QUEUE}.XQ"


def write_worker_modules(workdir: Path) -> Path:
    """Write both task modules under ``workdir``; return the ``--modules`` directory for aury."""
    (workdir / "bench_raw_tasks.py").write_text(RAW_WORKER_MODULE)
    modules_dir = workdir / "bench_modules"
    (modules_dir / "bench").mkdir(parents=True)
    (modules_dir / "bench" / "tasks.py").write_text(AURY_WORKER_MODULE)
    return modules_dir


def make_raw_side(url: str, workdir: Path, args: argparse.Namespace, env: dict[str, str]) -> Side:
    """Raw Dramatiq: a ``RedisBroker`` in this process, ``dramatiq`` CLI for the worker."""
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
    return Side(
        name="raw",
        namespace=RAW_NAMESPACE,
        send_noop=noop_actor.send,
        send_latency=latency_actor.send,
        worker_argv=argv,
        worker_env={**env, "BENCH_REDIS_URL": url, "BENCH_RAW_NAMESPACE": RAW_NAMESPACE},
        close=broker.close,
    )


def make_aury_side(
    url: str, workdir: Path, modules_dir: Path, args: argparse.Namespace, env: dict[str, str]
) -> Side:
    """aury-tasks: a producer-mode ``TaskManager`` in this process, ``aum worker`` for the worker."""
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

    argv = [
        sys.executable, "-m", "aury_tasks.cli", "worker", "--modules", str(modules_dir),
        "--processes", str(args.processes), "--concurrency", str(args.threads), "--queues", QUEUE,
    ]  # fmt: skip
    return Side(
        name="aury",
        namespace=keys.BROKER_NAMESPACE,
        send_noop=noop.send,
        send_latency=latency.send,
        worker_argv=argv,
        worker_env={**env, "BENCH_REDIS_URL": url, "TASK_BROKER_URL": url, "TASK_DATA_DIR": data_dir},
        close=tm.close,
    )
