"""The ledger's threads in a worker process: deferred start writes, cancels, heartbeats, trimming."""

from __future__ import annotations

import contextlib
import threading
import time

import dramatiq
import redis
from dramatiq.common import q_name
from dramatiq.threading import raise_thread_exception
from loguru import logger

from ..broker.redis.dramatiq_internals import consumers_of
from ..core.errors import TaskInterrupted
from ..core.redaction import redact_text
from ..core.status import TaskStatus
from ..ledger.records import WorkerInfo
from ..ledger.redis_ledger import RedisLedger
from ..redis.channels import follow_channel
from ..redis.outage import redis_back, redis_lost
from ..redis.scripts import Write, run_pipelined

#: Seconds between a worker's heartbeats in the ledger.
HEARTBEAT_INTERVAL = 5.0
#: Seconds between index trims (one worker of all does it, under a lock).
TRIM_INTERVAL = 300.0
#: Seconds between index catch-ups of a worker that ran no task (one that did catches up at
#: each heartbeat; see :meth:`RedisLedger.catch_up`).
IDLE_CATCH_UP_INTERVAL = 60.0
#: Most backlog ids a worker indexes per heartbeat (a later beat goes on; readers catch up fully);
#: the same as the backlog's limit (``store.scripts.INDEX_BACKLOG_LIMIT``).
CATCH_UP_PER_BEAT = 50_000


class _LoopThread(threading.Thread):
    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._stopping = threading.Event()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the thread to end and wait a little for it."""
        self._stopping.set()
        self.join(timeout)


class RunningTasks:
    """Which task runs on which worker thread, so that a cancel can interrupt it."""

    def __init__(self) -> None:
        self._threads: dict[str, int] = {}
        self._lock = threading.Lock()
        #: Tasks started since this process began.
        self.started = 0

    def add(self, task_id: str) -> None:
        """Record that ``task_id`` runs on the calling thread."""
        with self._lock:
            self._threads[task_id] = threading.get_ident()
            self.started += 1

    def remove(self, task_id: str) -> None:
        """Record that ``task_id`` has stopped running."""
        with self._lock:
            self._threads.pop(task_id, None)

    def interrupt(self, task_id: str) -> bool:
        """Raise :class:`TaskInterrupted` in the thread running ``task_id``, if any."""
        with self._lock:
            thread_id = self._threads.get(task_id)
            if thread_id is None:
                return False
            logger.info("interrupting cancelled task {}", task_id)
            raise_thread_exception(thread_id, TaskInterrupted)
            return True


class StartWriter(_LoopThread):
    """Writes ``started`` for tasks still running ``delay`` seconds after they began, batched.

    A task that ends sooner takes its start back (:meth:`cancel`); its final write carries its
    start time, so short tasks cost no start write. Nothing is built or signalled per task: the
    thread looks every ``delay / 2`` seconds (so a start is written 1 to 1.5 times ``delay`` after
    it happened) and builds the writes of the tasks still running.
    """

    def __init__(self, store: RedisLedger, delay: float, worker_name: str) -> None:
        super().__init__("aury-start-writer")
        self.store = store
        self.delay = delay
        self.worker_name = worker_name
        # task id -> (attempt, started at); dict order is start order. Plain dict operations
        # are atomic under the GIL, so worker threads add and remove without a lock.
        self._pending: dict[str, tuple[int, float]] = {}

    def schedule(self, task_id: str, attempt: int, started_at: float) -> None:
        """Write that ``task_id`` started unless :meth:`cancel` takes it back within ``delay``."""
        self._pending[task_id] = (attempt, started_at)

    def cancel(self, task_id: str) -> Write | None:
        """Take back the start of ``task_id``; return its write if it was not sent yet."""
        entry = self._pending.pop(task_id, None)
        return self._write(task_id, *entry) if entry is not None else None

    def _write(self, task_id: str, attempt: int, started_at: float) -> Write:
        return self.store.transition_write(
            task_id, TaskStatus.STARTED, attempt=attempt, started_at=started_at, worker=self.worker_name
        )

    def run(self) -> None:
        while not self._stopping.wait(self.delay / 2):
            cutoff = time.time() - self.delay
            due: list[Write] = []
            for task_id, (attempt, started_at) in self._pending.copy().items():
                if started_at > cutoff:
                    break
                if self._pending.pop(task_id, None) is not None:
                    due.append(self._write(task_id, attempt, started_at))
            if not due:
                continue
            try:
                run_pipelined(self.store.client, due)
            except redis.RedisError as exc:
                logger.warning("could not write task start times: {}", redact_text(str(exc)))


class CancelWatcher(_LoopThread):
    """Knows every cancelled task id and interrupts cancelled tasks running here.

    Loads the durable set of cancelled ids, then follows the cancel channel; after a lost
    connection it subscribes again and reloads the set, so no cancel is missed.
    """

    def __init__(self, store: RedisLedger, running: RunningTasks) -> None:
        super().__init__("aury-cancel-watcher")
        self.store = store
        self.running = running
        self._cancelled: set[str] = set()
        self._ready = threading.Event()

    def is_cancelled(self, task_id: str) -> bool:
        """Whether ``task_id`` was cancelled."""
        return task_id in self._cancelled

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the cancelled ids are loaded."""
        return self._ready.wait(timeout)

    def _cancel(self, task_id: str) -> None:
        self._cancelled.add(task_id)
        self.running.interrupt(task_id)

    def run(self) -> None:
        follow_channel(
            self.store.client, self.store.keys.cancel_channel(), stopping=self._stopping,
            caught_up=self._load_cancelled, received=self._cancel, poll_seconds=1.0,
            lost="cancel watcher lost Redis",
        )  # fmt: skip

    def _load_cancelled(self) -> None:
        for task_id in self.store.cancelled_since(time.time() - self.store.ttl):
            self._cancel(task_id)
        self._ready.set()


class Upkeep(_LoopThread):
    """Announces the worker every few seconds, keeps the ledger's indexes caught up with the
    sends (at each heartbeat after tasks ran, else every minute) and, now and then, trims them."""

    def __init__(
        self, store: RedisLedger, worker_name: str, worker: dramatiq.Worker, running: RunningTasks
    ) -> None:
        super().__init__("aury-ledger-upkeep")
        self.store = store
        self.worker = worker
        self.running = running
        host, _, pid = worker_name.rpartition(":")
        self.info = WorkerInfo(id=f"{worker_name}:{id(worker):x}", host=host, pid=int(pid), queues=[],
                               started_at=time.time(), last_seen=0.0)  # fmt: skip

    def _queues(self) -> list[str]:
        return sorted({q_name(name) for name in consumers_of(self.worker)})

    def run(self) -> None:
        next_trim = time.monotonic() + 10.0
        # The first catch-up waits for the tasks a worker runs (then it follows their beat) or a
        # whole idle interval: the records of a backlog it drains at start mostly end before they
        # are indexed, and their status writes then touch no index (see index_backlog.lua).
        next_catch_up, started = time.monotonic() + IDLE_CATCH_UP_INTERVAL, self.running.started
        while not self._stopping.is_set():
            try:
                self.info.queues[:] = self._queues()
                self.store.heartbeat(self.info)
                if self.running.started != started or time.monotonic() >= next_catch_up:
                    started = self.running.started
                    next_catch_up = time.monotonic() + IDLE_CATCH_UP_INTERVAL
                    self.store.catch_up(limit=CATCH_UP_PER_BEAT)
                if time.monotonic() >= next_trim:
                    next_trim = time.monotonic() + TRIM_INTERVAL
                    if self.store.client.set(
                        self.store.keys.maintenance_lock(), self.info.id, nx=True, ex=int(TRIM_INTERVAL)
                    ):
                        removed = self.store.trim_indexes()
                        if removed:
                            logger.debug("trimmed {} expired entries from the ledger's indexes", removed)
                redis_back("ledger upkeep")
            except redis.RedisError as exc:
                redis_lost("ledger upkeep", exc)
            self._stopping.wait(HEARTBEAT_INTERVAL)
        with contextlib.suppress(redis.RedisError):
            self.store.forget_worker(self.info.id)
