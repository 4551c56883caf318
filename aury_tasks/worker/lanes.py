"""Per-queue concurrency: ``aum worker -q cpu:2,io:20,default``.

A queue given as ``name:N`` gets N worker threads of its own in each worker process, fed by a
work queue of its own; the queues given without a limit share the ``-c`` threads. So a backlog of
slow ``cpu`` tasks holds at most N threads of a process and never starves the other queues. The
limit is per worker process: with ``-p 2`` two ``cpu`` tasks may run at once per process.

It is still Dramatiq's worker, one per process: :class:`QueueLimitedWorker` is Dramatiq's
:class:`~dramatiq.Worker` whose consumers and worker threads are split into lanes (one per
limited queue, one shared), so every middleware sees one worker boot and one shutdown, and a
graceful stop gives back what each lane fetched and did not run.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from queue import PriorityQueue
from typing import Any

from dramatiq import Broker
from dramatiq.common import iter_queue, join_all, q_name
from dramatiq.errors import BrokerConnectionError
from dramatiq.worker import DELAY_QUEUE_PREFETCH, WORKER_TIMEOUT

from ..broker.redis.dramatiq_internals import LaneableWorker
from ..core.errors import ConfigError

#: The most threads a queue's limit may ask for (as ``-c``).
MAX_LIMIT = 1024
_LIMIT = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class QueueSpec:
    """One queue given with ``-q``: its name and, for ``name:N``, its limit (threads per process)."""

    name: str
    limit: int | None = None

    def __str__(self) -> str:
        return self.name if self.limit is None else f"{self.name}:{self.limit}"


def parse_queues(values: Iterable[str]) -> list[QueueSpec]:
    """The queues of ``-q`` options: ``name`` or ``name:N``, comma-separated or repeated.

    >>> parse_queues(["cpu:2,io:20", "default"])
    [QueueSpec(name='cpu', limit=2), QueueSpec(name='io', limit=20), QueueSpec(name='default', limit=None)]

    Raises:
      ConfigError: naming the bad part (``cpu:0``, ``cpu:x``, ``:3``, a queue given twice).
    """
    specs: list[QueueSpec] = []
    seen: set[str] = set()
    for value in values:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            name, colon, limit_text = (s.strip() for s in part.partition(":"))
            if not name:
                raise ConfigError(f"invalid -q/--queues {part!r}: a queue name is missing before ':'")
            limit = None
            if colon:
                if not _LIMIT.fullmatch(limit_text) or not 1 <= int(limit_text) <= MAX_LIMIT:
                    raise ConfigError(
                        f"invalid -q/--queues {part!r}: the limit after ':' must be a whole number "
                        f"from 1 to {MAX_LIMIT} (threads per worker process), as in {name}:2"
                    )
                limit = int(limit_text)
            if name in seen:
                raise ConfigError(f"invalid -q/--queues {part!r}: queue {name!r} is given twice")
            seen.add(name)
            specs.append(QueueSpec(name, limit))
    return specs


@dataclass
class Lane:
    """The threads and the work queue that one limited queue has to itself in a worker process."""

    threads: int
    prefetch: int
    work_queue: PriorityQueue[Any] = field(default_factory=PriorityQueue)


class QueueLimitedWorker(LaneableWorker):
    """Dramatiq's worker, with threads of their own for the queues that have a limit.

    Parameters:
      broker: The broker.
      queues: The queues to consume (all of them, limited or not).
      worker_threads: Threads shared by the queues without a limit (none are started when every
        queue has one).
      limits: Queue name -> ``(threads, prefetch)`` of its lane.
      worker_timeout: As Dramatiq's.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        queues: Iterable[str] | None = None,
        worker_timeout: int = WORKER_TIMEOUT,
        worker_threads: int = 8,
        limits: Mapping[str, tuple[int, int]],
    ) -> None:
        whitelist = set(queues or ())
        super().__init__(broker, queues=whitelist or None, worker_timeout=worker_timeout,
                         worker_threads=worker_threads)  # fmt: skip
        self.lanes = {name: Lane(threads, prefetch) for name, (threads, prefetch) in limits.items()}
        shared = worker_threads if not whitelist or whitelist - set(self.lanes) else 0
        # Worker.start adds `worker_threads` threads (add_worker_thread): each takes its lane in turn.
        self._plan: list[Lane | None] = [lane for lane in self.lanes.values() for _ in range(lane.threads)]
        self._plan += [None] * shared
        self.worker_threads = len(self._plan)
        self.delay_prefetch = DELAY_QUEUE_PREFETCH or min(self.worker_threads * 1000, 65535)

    def add_consumer(self, queue_name: str, *, delay: bool = False) -> None:
        lane = self.lanes.get(q_name(queue_name))
        if lane is None:
            super().add_consumer(queue_name, delay=delay)
            return
        self.start_consumer(queue_name, self.delay_prefetch if delay else lane.prefetch, lane.work_queue)

    def add_worker_thread(self) -> None:
        lane = self._plan.pop(0) if self._plan else None
        self.start_worker_thread(self.work_queue if lane is None else lane.work_queue)

    def _work_queues(self) -> list[PriorityQueue[Any]]:
        return [self.work_queue, *(lane.work_queue for lane in self.lanes.values())]

    def stop(self, timeout: int = 600000) -> None:
        """Stop gracefully, as Dramatiq's worker does, giving back what every lane holds.

        Parameters:
          timeout: Milliseconds to wait for the running tasks, then for the consumers.
        """
        # Dramatiq's Worker.stop, with the requeue of every lane's work queue, not only the shared one.
        self.broker.emit_before("worker_shutdown", self)
        self.logger.info("Shutting down...")
        for thread in self.workers:  # workers first: the consumers keep the heartbeat meanwhile
            thread.stop()
        join_all(self.workers, timeout)
        for consumer in self.consumers.values():
            consumer.stop()
        join_all(self.consumers.values(), timeout)
        messages_by_queue = defaultdict(list)
        for work_queue in self._work_queues():
            for item in iter_queue(work_queue):
                messages_by_queue[item.message.queue_name].append(item.message)
        for queue_name, messages in messages_by_queue.items():
            try:
                self.consumers[queue_name].requeue_messages(messages)
            except BrokerConnectionError:
                self.logger.warning("Failed to requeue messages on queue %r.", queue_name, exc_info=True)
        for consumer in self.consumers.values():
            consumer.close()
        self.broker.emit_after("worker_shutdown", self)
        self.logger.info("Worker has been shut down.")

    def join(self) -> None:
        """Wait until every lane has run what it was given (for tests, as Dramatiq's)."""
        while True:
            super().join()
            for work_queue in self._work_queues():
                work_queue.join()
            if not any(work_queue.unfinished_tasks for work_queue in self._work_queues()) and not any(
                consumer.delay_queue.unfinished_tasks for consumer in self.consumers.values()
            ):
                return
