"""``aum worker``: run Dramatiq's worker and process supervisor on the discovered tasks."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import click
from loguru import logger

from .. import __version__
from ..config.settings import TaskSettings
from ..core.errors import ConfigError
from ..core.run_mode import RunMode
from ..tasks.manager import TaskManager
from ..worker.discovery import TaskModule, import_task_modules
from ..worker.lanes import QueueSpec, parse_queues
from ..worker.setup import WorkerSetup
from .context import AumContext, modules_option, pass_context
from .server_checks import check_rabbitmq, reach_broker, warn_about_redis

#: Messages of a queue a worker process holds per thread by default (Celery's prefetch
#: multiplier; Dramatiq's is 2). Fetching in batches of half of it keeps the threads fed while
#: a fetch is under way: with 2 per thread, a draining worker's threads waited for work.
PREFETCH_PER_THREAD = 4
#: Dramatiq's environment variable for its queue prefetch.
PREFETCH_ENV = "dramatiq_queue_prefetch"


def _setting_override(name: str) -> Callable[[click.Context, click.Parameter, int | None], None]:
    """A click callback that makes an option's value, when given, override the setting ``name``."""

    def override(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
        if value is not None:
            ctx.ensure_object(AumContext).overrides[name] = value

    return override


def _recycling_option(flag: str, metavar: str, setting: str, help: str) -> Callable[..., Any]:
    """``--max-*-per-child``: a count from 0 that, when given, overrides the setting ``setting``."""
    return click.option(flag, type=click.IntRange(0), default=None, metavar=metavar, expose_value=False,
                        callback=_setting_override(setting), help=help)  # fmt: skip


@dataclass(frozen=True)
class WorkerOptions:
    """The options ``aum worker`` and ``aum run`` share, as :func:`worker_options` hands them over."""

    #: ``-q``: the values given, ``name`` or ``name:N`` (N threads of its own per process).
    queues: tuple[str, ...] = ()
    #: ``-c``: threads of one process (``None``: ``TASK_MAX_WORKERS``).
    concurrency: int | None = None
    #: ``-p``: worker processes.
    processes: int = 1
    #: ``--prefetch``: messages of a queue a worker process holds (``None``: Dramatiq's
    #: ``dramatiq_queue_prefetch`` if set, else :data:`PREFETCH_PER_THREAD` per thread).
    prefetch: int | None = None
    #: ``--modules`` (``None``: ``TASK_MODULES_DIR``).
    modules_dir: str | None = None
    #: ``--shutdown-timeout``: seconds running tasks get to finish after SIGTERM/SIGINT.
    shutdown_timeout: float = 600.0


#: The parameter names of :class:`WorkerOptions`, as click passes them.
_WORKER_OPTION_NAMES = tuple(option.name for option in dataclasses.fields(WorkerOptions))
#: The shared options, in the order ``--help`` shows them.
_WORKER_OPTIONS = [
    click.option(
        "-q",
        "--queues",
        multiple=True,
        metavar="QUEUE[:N][,…]",
        help="Queues to consume, comma-separated or repeated; QUEUE:N gives that queue N threads "
        "of its own in each process, the others share --concurrency.  "
        "[default: every queue of the discovered tasks]",
    ),
    click.option(
        "-c",
        "--concurrency",
        type=click.IntRange(1, 1024),
        default=None,
        help="Tasks one process runs at once (threads).  [default: TASK_MAX_WORKERS]",
    ),
    click.option("-p", "--processes", type=click.IntRange(1, 256), default=1, help="Worker processes."),
    click.option(
        "--prefetch",
        type=click.IntRange(1, 65535),
        default=None,
        help="Messages of a queue one process holds at most, running or waiting; it fetches more "
        "in batches of half that.  [default: 4 per thread, or dramatiq_queue_prefetch]",
    ),
    modules_option,
    click.option(
        "--shutdown-timeout",
        type=click.FloatRange(0),
        default=600.0,
        help="Seconds running tasks get to finish after SIGTERM/SIGINT.",
    ),
    _recycling_option(
        "--max-tasks-per-child", "N", "max_tasks_per_child",
        "Replace a worker process by a fresh one once it has run N tasks (after its running "
        "ones; 0: never).  [default: TASK_MAX_TASKS_PER_CHILD]",
    ),
    _recycling_option(
        "--max-memory-per-child", "MIB", "max_memory_per_child",
        "Replace a worker process the same way once its resident memory reaches MIB MiB "
        "(0: never).  [default: TASK_MAX_MEMORY_PER_CHILD]",
    ),
]  # fmt: skip


def worker_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``aum worker``, shared with ``aum run``: ``command`` gets them as ``options``.

    ``command`` takes a :class:`WorkerOptions` keyword ``options`` in place of the six values.
    """

    @functools.wraps(command)
    def with_options(*args: Any, **values: Any) -> Any:
        options = WorkerOptions(**{name: values.pop(name) for name in _WORKER_OPTION_NAMES})
        return command(*args, options=options, **values)

    for option in reversed(_WORKER_OPTIONS):
        with_options = option(with_options)
    return with_options


@click.command(context_settings={"show_default": True})
@worker_options
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve the worker processes' Prometheus metrics on this port, at TASK_METRICS_HOST (0: not "
    "served).  [default: TASK_METRICS_PORT]",
)
@pass_context
def worker(aum: AumContext, options: WorkerOptions, metrics_port: int | None) -> None:
    """Run a worker that executes the tasks of the discovered modules.

    Imports TASK_MODULES_DIR/<name>/tasks/ (a package) or tasks.py for every module, then runs
    Dramatiq's worker: PROCESSES processes of CONCURRENCY threads each. Sync tasks run in the
    threads, async tasks on an event loop; timeouts apply to both.

    Each process holds up to --prefetch messages of a queue (running, or fetched and waiting for a
    thread); a lower value spreads long tasks more evenly over several workers.

    A queue given as NAME:N runs at most N of its tasks at once in each process, on N threads of
    its own (prefetch 4 per thread, at most --prefetch), so a backlog of slow tasks there never
    holds the threads the other queues use: -q cpu:2,io:20,default. The queues given without a
    limit share the CONCURRENCY threads. The limit is per process: -p 2 runs up to 2 x N.

    SIGTERM or SIGINT (Ctrl-C) stops it gracefully: running tasks get --shutdown-timeout seconds
    to finish. A message is acknowledged only after its task ran, so the tasks of a worker that
    is killed are delivered again (at-least-once: make tasks idempotent). If a worker process
    dies, aum worker stops and exits non-zero, so a supervisor can restart it.

    --max-tasks-per-child N (or --max-memory-per-child MIB) replaces a worker process by a fresh
    one once it has run N tasks (or its resident memory reached MIB MiB): it starts no new task,
    gives back what it fetched, finishes its running tasks, and another takes its place.

    \b
    Examples:
      aum worker                      every queue, TASK_MAX_WORKERS threads
      aum worker -q emails,default -c 16 -p 2
      aum worker -q cpu:2,io:20,default   2 cpu and 20 io tasks at most, default on the -c threads
      aum worker --metrics-port 9191  dramatiq_* metrics at http://127.0.0.1:9191/metrics
      aum worker --max-tasks-per-child 500   a fresh process after every 500 tasks
    """
    if metrics_port is not None:
        aum.overrides["metrics_port"] = metrics_port
    run_worker(aum, options)


@dataclass(frozen=True)
class _Plan:
    """What the worker processes consume, on how many threads, holding how many messages."""

    #: The queues consumed: those given with ``-q``, else every queue a task declares.
    queues: list[str]
    #: Threads of one process that the queues without a limit share.
    threads: int
    #: Messages of a queue (without a limit) one process holds.
    prefetch: int
    #: The limited queues: name -> ``(threads, prefetch)`` of its lane.
    limits: dict[str, tuple[int, int]]


def run_worker(
    aum: AumContext,
    options: WorkerOptions,
    *,
    forks: Sequence[str] = (),
    role: str = "worker",
    check: Callable[[TaskManager], None] | None = None,
    scheduler_lease_ttl: float | None = None,
) -> NoReturn:
    """Import the task modules, check the broker, then become Dramatiq's supervisor.

    The process replaces itself with :mod:`aury_tasks.worker.supervisor` (same process id), which
    starts the worker processes; its exit code is Dramatiq's. They get their set-up from a
    :class:`~aury_tasks.worker.setup.WorkerSetup` this writes.

    ``forks``: import paths of functions Dramatiq runs in processes of their own next to the
    worker processes (``aum run``'s scheduler). ``check``: called with the TaskManager once the
    modules are imported, before any process starts; it raises to stop with one line.
    ``scheduler_lease_ttl``: ``aum run --lease-ttl``, handed to its scheduler process.

    Raises:
      ConfigError: a ``-q`` value is malformed (a limit that is not a whole number from 1, a
        missing name, a queue given twice), before anything else is read.
    """
    specs = parse_queues(options.queues)
    settings = _read_settings(aum, options)
    given = [spec.name for spec in specs]
    enter_worker_mode(settings)
    tm, modules = _import_tasks(settings)
    plan = _plan_work(tm, specs, options)
    setup = WorkerSetup(settings=settings.snapshot(), queues=tuple(given), queue_limits=plan.limits,
                        scheduler_lease_ttl=scheduler_lease_ttl)  # fmt: skip
    _check_servers(tm, check, plan.queues)
    metrics_dir = _prepare_metrics(settings)
    _log_start(tm, modules, plan, role=role, processes=options.processes, metrics=metrics_dir is not None)
    arguments = _supervisor_arguments(tm, options, plan, forks=forks, metrics=metrics_dir)
    _become_supervisor(setup, plan.prefetch, arguments)


def _read_settings(aum: AumContext, options: WorkerOptions) -> TaskSettings:
    """The settings (with ``--modules``, if given), logging configured from them."""
    if options.modules_dir is not None:
        aum.overrides["modules_dir"] = options.modules_dir
    settings = aum.settings
    aum.setup_logging()
    return settings


def enter_worker_mode(settings: TaskSettings) -> None:
    """Make worker mode and the modules directory the settings of this process and all it starts.

    These two are settings, not the worker's set-up (which :class:`WorkerSetup` hands over): every
    TaskManager of this process tree that reads its own settings (another named manager in a task
    module, an ``aum`` command a task runs) reads ``TASK_RUN_MODE`` and ``TASK_MODULES_DIR``.
    """
    os.environ["TASK_RUN_MODE"] = RunMode.WORKER.value
    os.environ["TASK_MODULES_DIR"] = os.path.abspath(settings.modules_dir)


def _import_tasks(settings: TaskSettings) -> tuple[TaskManager, list[TaskModule]]:
    """The default TaskManager in worker mode, once the task modules are imported.

    Raises:
      ConfigError: the modules declare no task.
    """
    tm = TaskManager.get_instance()
    tm.initialize(run_mode=RunMode.WORKER, settings=settings)
    modules = import_task_modules(settings.modules_dir)
    if not tm.tasks:
        raise ConfigError(
            f"no tasks found under {settings.modules_dir}/ (looked for <name>/tasks/ or <name>/tasks.py)"
        )
    return tm, modules


def _plan_work(tm: TaskManager, specs: list[QueueSpec], options: WorkerOptions) -> _Plan:
    """The queues to consume, the threads of one process, its prefetch, each limited queue's lane.

    The queues are those given with ``-q`` (with a warning for those no task declares), else
    every declared one.
    """
    given = [spec.name for spec in specs]
    declared = sorted({task.queue_name for task in tm.tasks.values()})
    unknown = [q for q in given if q not in declared]
    if unknown:
        logger.warning("no discovered task uses queue(s) {}; consuming them anyway", ", ".join(unknown))
    threads = options.concurrency or tm.settings.max_workers
    capped = options.prefetch or int(os.environ.get(PREFETCH_ENV) or 0)
    limits = {spec.name: (spec.limit, min(PREFETCH_PER_THREAD * spec.limit, capped or 65535))
              for spec in specs if spec.limit is not None}  # fmt: skip
    prefetch = capped or PREFETCH_PER_THREAD * threads
    return _Plan(queues=given or declared, threads=threads, prefetch=prefetch, limits=limits)


def _check_servers(tm: TaskManager, check: Callable[[TaskManager], None] | None, queues: list[str]) -> None:
    """Reach the broker, run the command's own ``check``, then warn about the servers.

    On RabbitMQ, the worker's ``queues`` are declared after the command's check (whose errors are
    settings' errors, exit 2, before RabbitMQ is reached): one line if RabbitMQ refuses one.
    """
    reach_broker(tm)
    if check is not None:
        check(tm)
    check_rabbitmq(tm, queues)
    warn_about_redis(tm)


def _prepare_metrics(settings: TaskSettings) -> str | None:
    """The directory of the worker processes' metrics files, if ``TASK_METRICS_PORT`` is set."""
    if not settings.metrics_port:
        return None
    from ..worker.metrics import prepare_worker_metrics  # not loaded by every aum command

    return prepare_worker_metrics(settings)


def _log_start(
    tm: TaskManager, modules: list[TaskModule], plan: _Plan, *, role: str, processes: int, metrics: bool
) -> None:
    """Say what starts: the version and broker, the tasks and modules, the queues and threads."""
    settings = tm.settings
    logger.info("aury-tasks {} {}, broker: {}", __version__, role, tm.broker_info.describe())
    logger.info(
        "{} task(s) from {} ({}); {}",
        len(tm.tasks), settings.modules_dir, ", ".join(m.name for m in modules),
        describe_queues(plan.queues, plan.limits, processes=processes, threads=plan.threads,
                        prefetch=plan.prefetch),
    )  # fmt: skip
    if metrics:
        logger.info("metrics at http://{}:{}/metrics", settings.metrics_host, settings.metrics_port)


def _supervisor_arguments(
    tm: TaskManager,
    options: WorkerOptions,
    plan: _Plan,
    *,
    forks: Sequence[str],
    metrics: str | None,
) -> dict[str, Any]:
    """What :mod:`aury_tasks.worker.supervisor` is given: Dramatiq's namespace, and what it cleans up."""
    given: dict[str, Any] = {
        "broker": "aury_tasks.worker.process:boot_worker_process",
        "modules": [],
        "processes": options.processes,
        "threads": plan.threads,
        "path": [],
        "queues": plan.queues,
        "pid_file": None,
        "log_file": None,
        "skip_logging": True,
        "use_spawn": False,
        "forks": list(forks),
        "worker_fork_timeout": 30_000,
        "worker_shutdown_timeout": int(options.shutdown_timeout * 1000),
        "watch": None,
        "watch_use_polling": False,
        "include_patterns": ["**.py"],
        "exclude_patterns": None,
        "verbose": 0,
    }
    server = tm.broker_info.server
    if server is not None and server.owned:  # the supervisor stops it, as this process would have
        given["embedded_server"] = {"pid": server.pid, "state_file": str(server.state_file)}
    if metrics is not None:  # the supervisor removes it
        given["metrics_dir"] = metrics
    settings = tm.settings
    if settings.max_tasks_per_child or settings.max_memory_per_child:  # the supervisor replaces them
        given["recycling"] = {"max_tasks": settings.max_tasks_per_child,
                              "max_memory_mib": settings.max_memory_per_child}  # fmt: skip
    return given


def _become_supervisor(setup: WorkerSetup, prefetch: int, arguments: dict[str, Any]) -> NoReturn:
    """Hand the set-up over and replace this process with the supervisor (same process id)."""
    setup.export()
    # Dramatiq's own variable, read by Dramatiq's worker when it is imported (in the supervisor
    # and its processes): it stays an environment variable, outside the set-up.
    os.environ[PREFETCH_ENV] = str(prefetch)
    sys.stdout.flush()
    sys.stderr.flush()
    supervisor = [sys.executable, "-m", "aury_tasks.worker.supervisor", json.dumps(arguments)]
    os.execv(sys.executable, supervisor)  # noqa: S606 - this interpreter, our own module


def describe_queues(
    consumed: list[str], limits: dict[str, tuple[int, int]], *, processes: int, threads: int, prefetch: int
) -> str:
    """The startup line's queues and threads: each limited queue with its threads and prefetch.

    >>> describe_queues(["cpu", "default"], {"cpu": (2, 8)}, processes=1, threads=4, prefetch=16)
    'queues: cpu (limit 2, prefetch 8), default; 1 process(es) x 6 thread(s): 4 shared, prefetch 16'
    """
    if not limits:
        return f"queues: {', '.join(consumed)}; {processes} process(es) x {threads} thread(s), " \
               f"prefetch {prefetch}"  # fmt: skip
    shown = [f"{q} (limit {limits[q][0]}, prefetch {limits[q][1]})" if q in limits else q for q in consumed]
    shared = threads if any(q not in limits for q in consumed) else 0
    total = shared + sum(limit for limit, _ in limits.values())
    line = f"queues: {', '.join(shown)}; {processes} process(es) x {total} thread(s)"
    return line + (f": {shared} shared, prefetch {prefetch}" if shared else " (each queue has a limit)")
