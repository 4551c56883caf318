"""Worker recycling: ``aum worker --max-tasks-per-child N`` and ``--max-memory-per-child MiB``.

A worker process that has run N tasks (or grown past the memory limit) stops as on SIGTERM: it
stops taking messages, gives back those it fetched and did not start, lets its running tasks
finish, then exits with :data:`RET_RECYCLE`. Dramatiq's supervisor takes any worker process
that exits while it runs for a crash and stops everything, so here, in the supervisor only, each
worker process is a :class:`RecyclingWorkerProcess`: one that exits with :data:`RET_RECYCLE`
while the supervisor is not stopping is replaced at once by a fresh one (same arguments, same
index, same log pipe); any other exit is Dramatiq's business as before. It is still Dramatiq's
supervisor loop: only the process objects it watches are ours.

Two halves live here, so the supervisor (which loads only this and Dramatiq's CLI) and the worker
processes it forks agree on the exit code and on where a process reports its count:
:class:`Recycler` is the worker process's middleware, :func:`install` the supervisor's part.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import RawArray
from types import FrameType, ModuleType
from typing import Any

import dramatiq
from dramatiq import cli
from dramatiq.compat import StreamablePipe

from ..broker.redis.dramatiq_internals import (
    replace_cli_signal_unblocking,
    start_cli_processes_with,
    worker_threads_of,
)
from ..middleware.delivery import DeliveryMiddleware, Outcome

#: The exit code of a worker process that stopped to be replaced (EX_TEMPFAIL: "try again").
RET_RECYCLE = 75

#: Written by a worker process, read by the supervisor once it exited: [tasks run, MiB if the
#: memory limit was the reason else 0]. Set in each worker process before it boots.
_report: Any = None
#: In a worker process: whether it asked to be replaced, and whether a stop request came since.
_recycling = False
_stopped = False
#: In the supervisor: whether its signal handlers are in place, and whether it was asked to
#: stop (then nothing is replaced).
_supervisor_ready = False
_supervisor_stopping = False
#: A worker process's lines (stdlib logging, which the worker process routes to loguru: the
#: supervisor, which imports this module too, does not load loguru).
_child_log = logging.getLogger(__name__)
#: In the supervisor: its copies of the worker processes' log pipes (closed in every child).
_kept_fds: set[int] = set()


def resident_mib() -> float:
    """This process's resident memory (RSS) now, in MiB; its peak where ``/proc`` is missing."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def operator_stop() -> None:
    """Note, in a worker process, that it was told to stop: it then exits as stopped, not recycled."""
    global _recycling, _stopped
    _stopped = True
    _recycling = False


class Recycler(DeliveryMiddleware):
    """Stop the worker process once it has run ``max_tasks`` messages or uses ``max_memory_mib``.

    Every message processed counts once, whatever its outcome (success, failure, a retry, a
    skip). Over a limit, the worker threads stop taking messages at once and ``stop`` is called
    (the worker process's own graceful stop, as on SIGTERM); the process then exits with
    :data:`RET_RECYCLE` and the supervisor starts another in its place.

    Parameters:
      max_tasks: Messages processed before the process is replaced (0: no limit).
      max_memory_mib: Resident memory, in MiB, checked after each message (0: no limit).
      stop: Starts the process's graceful stop; called once, from a worker thread.
    """

    def __init__(self, *, max_tasks: int, max_memory_mib: int, stop: Callable[[], None]) -> None:
        self.max_tasks = max_tasks
        self.max_memory_mib = max_memory_mib
        self.stop = stop
        self.tasks = 0
        self.worker: dramatiq.Worker | None = None
        self._lock = threading.Lock()
        self._due = False

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.worker = worker
        size = resident_mib()
        if self.max_memory_mib and size >= self.max_memory_mib:
            _child_log.warning(
                "worker process %s uses %.0f MiB at start, over --max-memory-per-child %s: it is "
                "replaced after every task", os.getpid(), size, self.max_memory_mib,
            )  # fmt: skip

    def after_delivery(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy, outcome: Outcome
    ) -> None:
        self._count()

    def _count(self) -> None:
        global _recycling
        with self._lock:
            self.tasks += 1
            if _report is not None:
                _report[0] = self.tasks
            if self._due or _stopped:
                return
            size = resident_mib() if self.max_memory_mib else 0.0
            over_memory = bool(self.max_memory_mib) and size >= self.max_memory_mib
            if not over_memory and not (self.max_tasks and self.tasks >= self.max_tasks):
                return
            self._due = True
            if over_memory and _report is not None:
                _report[1] = max(1, round(size))
            count = self.tasks
        _recycling = True
        reason = f"uses {size:.0f} MiB" if over_memory else f"has run {count} tasks"
        _child_log.info("worker process %s %s: finishing its running tasks, then it is replaced",
                        os.getpid(), reason)  # fmt: skip
        for thread in worker_threads_of(self.worker) if self.worker is not None else ():
            thread.pause()  # no new message from now; the stop gives back what waits
        self.stop()


def supervised() -> bool:
    """Whether this worker process was started by a supervisor that replaces it (:func:`install`)."""
    return _report is not None


def _run_worker(report: Any, *args: Any) -> None:
    """A worker process: Dramatiq's, then exit with :data:`RET_RECYCLE` if it stopped to be replaced."""
    global _report
    for fd in _kept_fds:  # the supervisor's copies of every log pipe: the pipes are its to close
        os.close(fd)
    _kept_fds.clear()
    _report = report
    cli.worker_process(*args)
    if _recycling and not _stopped:
        sys.exit(RET_RECYCLE)


@dataclass(frozen=True)
class Limits:
    """The recycling limits the supervisor names in its log lines (0: none)."""

    max_tasks: int = 0
    max_memory_mib: int = 0


class RecyclingWorkerProcess:
    """One worker process slot of Dramatiq's supervisor: a process replaced when it asks to be.

    It stands for ``multiprocessing.Process(target=worker_process, args=...)`` where Dramatiq's
    ``main`` creates it and answers what ``main`` asks (``start``, ``join``, ``is_alive``,
    ``pid``, ``exitcode``). ``join`` replaces a process that exited with :data:`RET_RECYCLE`
    while the supervisor runs, so ``main`` sees it alive still; such an exit during a stop counts
    as a clean one (0).
    """

    def __init__(self, limits: Limits, args: tuple[Any, ...], daemon: bool | None = None) -> None:
        self.limits = limits
        self.args = args
        self.daemon = daemon
        self._report = RawArray("q", 2)
        self._log_fd: int | None = None
        self._process: multiprocessing.Process | None = None
        self._failed = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def exitcode(self) -> int | None:
        if self._failed:
            return cli.RET_KILLED
        code = self._process.exitcode if self._process is not None else None
        return cli.RET_OK if code == RET_RECYCLE else code

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> None:
        # Dramatiq closes its end of the log pipe once the process started: a copy lets a
        # replacement write to the same pipe, which the supervisor's log thread keeps reading.
        self._log_fd = os.dup(self.args[2].fileno())
        _kept_fds.add(self._log_fd)
        self._start(self.args)

    def join(self, timeout: float | None = None) -> None:
        assert self._process is not None
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None or self._failed:
            return
        if code == RET_RECYCLE and not _supervisor_stopping:
            self._replace()
        else:
            self._release_log_pipe()

    def _start(self, args: tuple[Any, ...]) -> None:
        # As Dramatiq's main does: the stop signals wait (blocked) while a process starts, so the
        # child never runs the supervisor's handlers, and a stop reaches the new process's pid.
        self._report[0] = self._report[1] = 0
        cli.try_block_signals()
        try:
            process = multiprocessing.Process(
                target=_run_worker, args=(self._report, *args), daemon=self.daemon
            )
            process.start()
            self._process = process
        finally:
            if _supervisor_ready:
                _unblock_signals()

    def _replace(self) -> None:
        assert self._process is not None and self._log_fd is not None
        old_pid, tasks, size = self._process.pid, self._report[0], self._report[1]
        pipe = Connection(os.dup(self._log_fd), readable=False)
        try:
            self._start((self.args[0], self.args[1], StreamablePipe(pipe), *self.args[3:]))
        except OSError:
            _log.critical("worker process %s could not be replaced. Shutting down...", old_pid, exc_info=True)
            self._failed = True
            return
        finally:
            pipe.close()
        if size:
            why = f"max-memory-per-child {self.limits.max_memory_mib} MiB, it used {size} MiB"
        else:
            why = f"max-tasks-per-child {self.limits.max_tasks}"
        _log.info("worker process %s recycled after %s tasks (%s); started %s", old_pid, tasks, why, self.pid)

    def _release_log_pipe(self) -> None:
        if self._log_fd is not None:
            _kept_fds.discard(self._log_fd)
            os.close(self._log_fd)
            self._log_fd = None


#: The supervisor's own lines (it has no loguru: the worker processes' lines look the same).
_log = logging.getLogger("aury_tasks.worker.supervisor")
#: Dramatiq's own, before :func:`install` replaces it.
_unblock_signals = cli.try_unblock_signals
_LINE_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-8s %(name)s - %(message)s"


class _RecyclingMultiprocessing(ModuleType):
    """``multiprocessing`` as Dramatiq's CLI sees it in the supervisor: its worker processes recycle."""

    def __init__(self, limits: Limits) -> None:
        super().__init__("multiprocessing")
        self.limits = limits

    def __getattr__(self, name: str) -> Any:
        return getattr(multiprocessing, name)

    def Process(self, *, target: Callable[..., Any], args: tuple[Any, ...] = (), **options: Any) -> Any:
        if target is not cli.worker_process:  # the fork processes (aum run's scheduler) stay as they are
            return multiprocessing.Process(target=target, args=args, **options)
        return RecyclingWorkerProcess(self.limits, args, options.get("daemon"))


def install(limits: Limits) -> None:
    """Make Dramatiq's supervisor, in this process, replace the worker processes that recycle."""
    supervisor = os.getpid()

    def note_stops() -> None:
        # Dramatiq's main installs its signal handlers, then unblocks the signals: wrapping them
        # here sees every stop request, and a worker process that recycles meanwhile stays stopped.
        global _supervisor_ready
        if os.getpid() == supervisor:
            for signum in cli.HANDLED_SIGNALS:
                _wrap_handler(signum)
            _supervisor_ready = True
        _unblock_signals()

    replace_cli_signal_unblocking(note_stops)
    if not _log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_LINE_FORMAT, "%Y-%m-%d %H:%M:%S"))
        _log.addHandler(handler)
        _log.setLevel(logging.INFO)
        _log.propagate = False
    start_cli_processes_with(_RecyclingMultiprocessing(limits))


def _wrap_handler(signum: signal.Signals) -> None:
    handler = signal.getsignal(signum)
    if not callable(handler):
        return

    def stopping(number: int, frame: FrameType | None) -> None:
        global _supervisor_stopping
        _supervisor_stopping = True
        handler(number, frame)

    signal.signal(signum, stopping)
