"""Steps the scenarios share: waiting, sending tagged work, reading what Redis and the ledger hold."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable

import redis
from reliability.harness import wait_for

from aury_tasks import TaskManager
from aury_tasks.core import keys

from .cluster import QUEUE, Cluster
from .evidence import Run


def send_work(producer: TaskManager, prefix: str, count: int, seconds: float = 0.0,
              *, per_second: float = 0.0, delay: float | None = None) -> list[str]:  # fmt: skip
    """Send ``count`` ``work`` tasks tagged ``prefix-N`` (``per_second``: paced); return the tags."""
    work = producer.get_task("work")
    tags = [f"{prefix}-{n}" for n in range(count)]
    started = time.monotonic()
    for number, tag in enumerate(tags):
        if delay is None:
            work.send(tag, seconds)
        else:
            work.send_with_options(args=(tag, seconds), delay=delay)
        if per_second:
            time.sleep(max(0.0, started + (number + 1) / per_second - time.monotonic()))
    return tags


def completed(runs: Iterable[Run], tags: Iterable[str]) -> set[str]:
    """The tags among ``tags`` that some run finished."""
    wanted = set(tags)
    return {run.tag for run in runs if run.end is not None and run.tag in wanted}


def held_by(client: redis.Redis, broker_ids: Iterable[str]) -> set[str]:
    """The tags of the messages the workers ``broker_ids`` hold (fetched, not acknowledged)."""
    tags: set[str] = set()
    for broker_id in broker_ids:
        ids = client.smembers(keys.DEFAULT.broker_fetched(broker_id, QUEUE))
        if not ids:
            continue
        for body in client.hmget(keys.DEFAULT.broker_messages(QUEUE), list(ids)):
            if body is not None:
                tags.add(str(json.loads(body)["args"][0]))
    return tags


def ledger_counts_by_pid(producer: TaskManager) -> Counter[int]:
    """Successful task records of the ``scale`` queue, counted by the worker process that ran them."""
    counts: Counter[int] = Counter()
    page = 1
    while True:
        listing = producer.list_tasks(status="success", queue=QUEUE, page=page, page_size=500)
        for record in listing.items:
            counts[int(record.worker.rsplit(":", 1)[1])] += 1
        if page * 500 >= listing.total or not listing.items:
            return counts
        page += 1


def wait_all_done(cluster: Cluster, tags: list[str], *, timeout: float) -> None:
    """Wait until some run finished every tag; on a timeout, say which did not and what the hosts said."""
    try:
        wait_for(
            lambda: len(completed(cluster.runs(), tags)) == len(tags), timeout=timeout, what="every task"
        )
    except AssertionError:
        missing = sorted(set(tags) - completed(cluster.runs(), tags))
        outputs = "\n---\n".join("\n".join(p.lines[-25:]) for p in cluster.processes)
        raise AssertionError(f"{len(missing)} task(s) never done: {missing[:20]}\n{outputs}") from None
