"""The peers ``run.py`` runs beside raw Dramatiq when they are installed: Celery, RQ and taskiq.

Each gets the same two sync tasks as the Dramatiq contenders (the same bodies, see
``contenders.TASK_BODIES``), on a queue named ``bench`` in its own Redis database, no result
backend, and a worker started through its own CLI with logging at WARNING (no line per task):

* Celery: Redis broker, ``celery worker -P threads -c <threads>`` (one process), ``task_acks_late``
  (a message is acknowledged after its task ran, as Dramatiq does), results ignored; progress is
  the queue's list plus kombu's ``unacked`` hash;
* RQ: ``rq worker`` with its default ``Worker`` class, which forks a work horse per job (one job
  at a time per worker process); progress is the queue's list plus its started-job registry
  (``rq:wip:bench``). Bulk enqueue is ``Queue.enqueue_many`` (one pipeline per call);
* taskiq: ``taskiq-redis``'s ``ListQueueBroker`` (``LPUSH``/``BRPOP``, no acknowledgement),
  ``taskiq worker --workers <processes> --max-async-tasks <threads> --max-threadpool-threads
  <threads>``, the broker's ``socket_timeout=None`` (redis-py 8's default 5 s read timeout would
  end its endless ``BRPOP`` after 5 s idle and kill the worker process); the harness sends from
  one asyncio event loop. Progress is the queue's list: the up to ``<threads>`` tasks a worker
  has taken and not finished are not seen (no-op tasks).

A peer whose packages are not importable is left out (``pip install -e '.[bench]'`` installs them).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from contenders import LATENCY_ACTOR, NOOP_ACTOR, QUEUE, TASK_BODIES, Side, database_url

#: The peers in the order they run (after raw Dramatiq and aury-tasks), with what each imports.
PEERS = {"celery": ["celery"], "rq": ["rq"], "taskiq": ["taskiq", "taskiq_redis"]}

_HEADER = '''"""{what} side of the benchmark."""
import os
import time

import redis
'''

CELERY_WORKER_MODULE = (
    _HEADER.format(what="Celery")
    + f"""from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(
    task_default_queue="{QUEUE}",
    task_ignore_result=True,
    task_acks_late=True,
    broker_connection_retry_on_startup=True,
)
"""
    + TASK_BODIES
    + f"""

@app.task(name="{NOOP_ACTOR}")
def noop():
    pass


@app.task(name="{LATENCY_ACTOR}")
def latency(submitted, key):
    _record(key, submitted)
"""
)

RQ_WORKER_MODULE = (
    _HEADER.format(what="RQ")
    + TASK_BODIES
    + """

def noop():
    pass


def latency(submitted, key):
    _record(key, submitted)
"""
)

TASKIQ_WORKER_MODULE = (
    _HEADER.format(what="taskiq")
    + f"""from taskiq_redis import ListQueueBroker

# redis-py 8 reads with a 5 s socket timeout by default: without this, a BRPOP with no
# timeout of its own fails after 5 s of idleness and the worker process dies (taskiq restarts it).
broker = ListQueueBroker(os.environ["BENCH_REDIS_URL"], queue_name="{QUEUE}", socket_timeout=None)
"""
    + TASK_BODIES
    + f"""

@broker.task(task_name="{NOOP_ACTOR}")
def noop():
    pass


@broker.task(task_name="{LATENCY_ACTOR}")
def latency(submitted, key):
    _record(key, submitted)
"""
)


def available(names: list[str]) -> tuple[list[str], list[str]]:
    """Split peer ``names`` into those whose packages import and notes on those that do not."""
    found, notes = [], []
    for name in names:
        missing = [module for module in PEERS[name] if importlib.util.find_spec(module) is None]
        if missing:
            notes.append(f"{name}: skipped, {', '.join(missing)} not installed (pip install -e '.[bench]')")
        else:
            found.append(name)
    return found, notes


def make_peer(name: str, url: str, workdir: Path, args: argparse.Namespace, env: dict[str, str]) -> Side:
    """The contender ``name`` (a key of :data:`PEERS`) on the server at ``url``."""
    makers: dict[str, Callable[..., Side]] = {"celery": make_celery, "rq": make_rq, "taskiq": make_taskiq}
    return makers[name](database_url(url, name), workdir, args, {**env, "PYTHONPATH": str(workdir)})


def _list_length(key: str) -> Callable[[redis.Redis], int]:
    return lambda client: int(client.llen(key))


def _delete(key: str) -> Callable[[redis.Redis], None]:
    return lambda client: client.delete(key)


def make_celery(url: str, workdir: Path, args: argparse.Namespace, env: dict[str, str]) -> Side:
    """Celery, Redis broker, threads pool, late acks, no result backend."""
    from celery import Celery

    (workdir / "bench_celery_tasks.py").write_text(CELERY_WORKER_MODULE)
    app = Celery("bench-harness", broker=url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE, task_ignore_result=True, broker_connection_retry_on_startup=True
    )

    @app.task(name=NOOP_ACTOR)
    def noop() -> None:
        pass

    @app.task(name=LATENCY_ACTOR)
    def latency(submitted: float, key: str) -> None:
        pass

    argv = [
        sys.executable, "-m", "celery", "-A", "bench_celery_tasks", "worker", "-P", "threads",
        "-c", str(args.threads), "-Q", QUEUE, "--loglevel", "WARNING", "-n", "bench@%h",
    ]  # fmt: skip
    return Side(
        name="celery",
        url=url,
        send_noop=noop.delay,
        send_latency=latency.delay,
        worker_argv=argv,
        worker_env={**env, "BENCH_REDIS_URL": url},
        close=app.close,
        # kombu's Redis transport moves a message it hands out from the queue's list to the
        # ``unacked`` hash, and deletes it from there on the (late) ack.
        remaining=lambda client: int(client.llen(QUEUE)) + int(client.hlen("unacked")),
        discard_waiting=_delete(QUEUE),
    )


def make_rq(url: str, workdir: Path, args: argparse.Namespace, env: dict[str, str]) -> Side:
    """RQ, its default (forking) worker, one job at a time."""
    from rq import Queue

    (workdir / "bench_rq_tasks.py").write_text(RQ_WORKER_MODULE)
    connection = redis.Redis.from_url(url)
    queue = Queue(QUEUE, connection=connection)
    noop, latency = "bench_rq_tasks.noop", "bench_rq_tasks.latency"

    def send_bulk(n: int) -> None:
        queue.enqueue_many([Queue.prepare_data(noop) for _ in range(n)])

    argv = [sys.executable, "-m", "rq.cli", "worker", "--url", url, "--path", str(workdir), "--quiet", QUEUE]
    return Side(
        name="rq",
        url=url,
        send_noop=lambda: queue.enqueue(noop),
        send_latency=lambda submitted, key: queue.enqueue(latency, submitted, key),
        send_bulk=send_bulk,
        worker_argv=argv,
        worker_env={**env, "BENCH_REDIS_URL": url},
        close=connection.close,
        # A job leaves the queue's list when a worker takes it and its started registry when done.
        remaining=lambda client: int(client.llen(queue.key)) + int(client.zcard(f"rq:wip:{QUEUE}")),
        dead_letters=lambda client: int(client.zcard(f"rq:failed:{QUEUE}")),
        discard_waiting=_delete(queue.key),
        reaped_cpu=True,
    )


def make_taskiq(url: str, workdir: Path, args: argparse.Namespace, env: dict[str, str]) -> Side:
    """taskiq with taskiq-redis's ``ListQueueBroker``, sent to from one event loop."""
    from taskiq_redis import ListQueueBroker

    (workdir / "bench_taskiq_tasks.py").write_text(TASKIQ_WORKER_MODULE)
    broker = ListQueueBroker(url, queue_name=QUEUE)

    @broker.task(task_name=NOOP_ACTOR)
    def noop() -> None:
        pass

    @broker.task(task_name=LATENCY_ACTOR)
    def latency(submitted: float, key: str) -> None:
        pass

    loop = asyncio.new_event_loop()
    loop.run_until_complete(broker.startup())

    async def send_noops(n: int) -> None:
        for _ in range(n):
            await noop.kiq()

    def close() -> None:
        loop.run_until_complete(broker.shutdown())
        loop.close()

    argv = [
        sys.executable, "-m", "taskiq", "worker", "bench_taskiq_tasks:broker",
        "--workers", str(args.processes), "--max-async-tasks", str(args.threads),
        "--max-threadpool-threads", str(args.threads), "--log-level", "WARNING",
    ]  # fmt: skip
    run: Callable[[Any], Any] = loop.run_until_complete
    return Side(
        name="taskiq",
        url=url,
        send_noop=lambda: run(noop.kiq()),
        send_noops=lambda n: run(send_noops(n)),
        send_latency=lambda submitted, key: run(latency.kiq(submitted, key)),
        worker_argv=argv,
        worker_env={**env, "BENCH_REDIS_URL": url},
        worker_processes=args.processes,
        close=close,
        remaining=_list_length(QUEUE),
        discard_waiting=_delete(QUEUE),
    )
