"""``aum worker``: run Dramatiq's worker and process supervisor on the discovered tasks."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click
import redis
from dramatiq.brokers.redis import RedisBroker
from loguru import logger
from redis.exceptions import AuthorizationError

from .. import __version__
from ..broker.redis.checks import MIN_REDIS_VERSION, redis_warnings, too_old
from ..config.snapshot import SNAPSHOT_ENV
from ..core.errors import BrokerUnavailable, ConfigError, LedgerUnavailable
from ..core.redaction import redact_text
from ..core.run_mode import RunMode
from ..tasks.manager import TaskManager
from ..worker.discovery import import_task_modules
from ..worker.lanes import parse_queues
from ..worker.process import QUEUE_LIMITS_ENV, QUEUES_ENV
from .context import AumContext, modules_option, pass_context

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


def worker_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``aum worker``, shared with ``aum run``."""
    options = [
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
        click.option(
            "--max-tasks-per-child",
            type=click.IntRange(0),
            default=None,
            metavar="N",
            expose_value=False,
            callback=_setting_override("max_tasks_per_child"),
            help="Replace a worker process by a fresh one once it has run N tasks (after its running "
            "ones; 0: never).  [default: TASK_MAX_TASKS_PER_CHILD]",
        ),
        click.option(
            "--max-memory-per-child",
            type=click.IntRange(0),
            default=None,
            metavar="MIB",
            expose_value=False,
            callback=_setting_override("max_memory_per_child"),
            help="Replace a worker process the same way once its resident memory reaches MIB MiB "
            "(0: never).  [default: TASK_MAX_MEMORY_PER_CHILD]",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


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
def worker(
    aum: AumContext,
    queues: tuple[str, ...],
    concurrency: int | None,
    processes: int,
    prefetch: int | None,
    modules_dir: str | None,
    shutdown_timeout: float,
    metrics_port: int | None,
) -> None:
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
    run_worker(aum, queues, concurrency, processes, modules_dir, shutdown_timeout, prefetch=prefetch)


def run_worker(
    aum: AumContext,
    queues: tuple[str, ...],
    concurrency: int | None,
    processes: int,
    modules_dir: str | None,
    shutdown_timeout: float,
    *,
    prefetch: int | None = None,
    forks: Sequence[str] = (),
    role: str = "worker",
    check: Callable[[TaskManager], None] | None = None,
) -> NoReturn:
    """Import the task modules, check the broker, then become Dramatiq's supervisor.

    The process replaces itself with :mod:`aury_tasks.worker.supervisor` (same process id), which
    starts the worker processes; its exit code is Dramatiq's.

    ``forks``: import paths of functions Dramatiq runs in processes of their own next to the
    worker processes (``aum run``'s scheduler). ``check``: called with the TaskManager once the
    modules are imported, before any process starts; it raises to stop with one line.
    ``prefetch``: messages of a queue a worker process holds (default: Dramatiq's
    ``dramatiq_queue_prefetch`` if set, else :data:`PREFETCH_PER_THREAD` per thread).
    ``queues``: the ``-q`` values, ``name`` or ``name:N`` (N threads of its own per process).

    Raises:
      ConfigError: a ``-q`` value is malformed (a limit that is not a whole number from 1, a
        missing name, a queue given twice), before anything else is read.
    """
    specs = parse_queues(queues)
    if modules_dir is not None:
        aum.overrides["modules_dir"] = modules_dir
    settings = aum.settings
    aum.setup_logging()
    queue_list = [spec.name for spec in specs]
    # Worker processes may be spawned rather than forked: they read their setup from here.
    os.environ["TASK_RUN_MODE"] = RunMode.WORKER.value
    os.environ["TASK_MODULES_DIR"] = os.path.abspath(settings.modules_dir)
    os.environ[QUEUES_ENV] = ",".join(queue_list)
    if aum.env_file is not None:
        os.environ["AURY_TASKS_ENV_FILE"] = str(aum.env_file)

    tm = TaskManager.get_instance()
    tm.initialize(run_mode=RunMode.WORKER, settings=settings)
    modules = import_task_modules(settings.modules_dir)
    declared = sorted({task.queue_name for task in tm.tasks.values()})
    if not tm.tasks:
        raise ConfigError(
            f"no tasks found under {settings.modules_dir}/ (looked for <name>/tasks/ or <name>/tasks.py)"
        )
    unknown = [q for q in queue_list if q not in declared]
    if unknown:
        logger.warning("no discovered task uses queue(s) {}; consuming them anyway", ", ".join(unknown))
    consumed = queue_list or declared
    threads = concurrency or settings.max_workers
    # Dramatiq's worker reads its prefetch from the environment when it is imported.
    capped = prefetch or int(os.environ.get(PREFETCH_ENV) or 0)
    prefetch = capped or PREFETCH_PER_THREAD * threads
    os.environ[PREFETCH_ENV] = str(prefetch)
    limits = {spec.name: (spec.limit, min(PREFETCH_PER_THREAD * spec.limit, capped or 65535))
              for spec in specs if spec.limit is not None}  # fmt: skip
    if limits:
        os.environ[QUEUE_LIMITS_ENV] = json.dumps(limits)
    else:
        os.environ.pop(QUEUE_LIMITS_ENV, None)
    os.environ[SNAPSHOT_ENV] = settings.snapshot().to_json()
    reach_broker(tm)
    if check is not None:
        check(tm)
    warn_about_redis(tm)
    metrics_dir = None
    if settings.metrics_port:
        from ..worker.metrics import prepare_worker_metrics

        metrics_dir = prepare_worker_metrics(settings)

    logger.info("aury-tasks {} {}, broker: {}", __version__, role, tm.broker_info.describe())
    logger.info(
        "{} task(s) from {} ({}); {}",
        len(tm.tasks), settings.modules_dir, ", ".join(m.name for m in modules),
        describe_queues(consumed, limits, processes=processes, threads=threads, prefetch=prefetch),
    )  # fmt: skip
    if metrics_dir is not None:
        logger.info("metrics at http://{}:{}/metrics", settings.metrics_host, settings.metrics_port)
    args = argparse.Namespace(
        broker="aury_tasks.worker.process:boot_worker_process",
        modules=[],
        processes=processes,
        threads=threads,
        path=[],
        queues=consumed,
        pid_file=None,
        log_file=None,
        skip_logging=True,
        use_spawn=False,
        forks=list(forks),
        worker_fork_timeout=30_000,
        worker_shutdown_timeout=int(shutdown_timeout * 1000),
        watch=None,
        watch_use_polling=False,
        include_patterns=["**.py"],
        exclude_patterns=None,
        verbose=0,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    given: dict[str, Any] = vars(args)
    server = tm.broker_info.server
    if server is not None and server.owned:  # the supervisor stops it, as this process would have
        given["embedded_server"] = {"pid": server.pid, "state_file": str(server.state_file)}
    if metrics_dir is not None:  # the supervisor removes it
        given["metrics_dir"] = metrics_dir
    if settings.max_tasks_per_child or settings.max_memory_per_child:  # the supervisor replaces them
        given["recycling"] = {"max_tasks": settings.max_tasks_per_child,
                              "max_memory_mib": settings.max_memory_per_child}  # fmt: skip
    supervisor = [sys.executable, "-m", "aury_tasks.worker.supervisor", json.dumps(given)]
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


def reach_broker(tm: TaskManager) -> None:
    """Make sure the broker's Redis answers and takes the credentials, before any process starts.

    A worker that cannot log in would otherwise restart its consumers every few seconds for
    ever. Once running, a worker rides out a Redis restart by itself.

    Raises:
      ConfigError: the server refused the URL's credentials (a wrong or missing password), or is
        older than Redis 6.2.
      BrokerUnavailable: the server could not be reached (after the client's bounded retries).
    """
    if not isinstance(tm.broker, RedisBroker):
        return
    shown = tm.broker_info.display_url
    try:
        tm.broker.client.ping()
        version = too_old(tm.broker.client)
        if version is not None:
            wanted = ".".join(map(str, MIN_REDIS_VERSION))
            raise ConfigError(f"invalid setting TASK_BROKER_URL: {shown} is Redis {version}; "
                              f"aury-tasks needs Redis {wanted} or later (or Valkey)")  # fmt: skip
    except (redis.AuthenticationError, AuthorizationError, redis.ResponseError) as exc:
        text = str(exc)
        if isinstance(exc, redis.ResponseError) and not ("NOAUTH" in text or "WRONGPASS" in text):
            raise
        if not tm.broker.client.connection_pool.connection_kwargs.get("password"):
            raise ConfigError(f"invalid setting TASK_BROKER_URL: {shown} wants a password") from None
        raise ConfigError(
            f"invalid setting TASK_BROKER_URL: {shown} refused its credentials ({redact_text(text)[:120]})"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BrokerUnavailable(f"broker {shown} unreachable ({redact_text(str(exc))})") from None


def warn_about_redis(tm: TaskManager) -> None:
    """Say once, at start, what is risky about the Redis servers the worker uses (none: nothing).

    The ledger is checked apart only when ``TASK_RESULT_BACKEND_URL`` puts it on its own server.
    An unreachable server is skipped here: the worker's own connection errors say so.
    """
    servers: list[tuple[str, redis.Redis]] = []
    if isinstance(tm.broker, RedisBroker):
        servers.append(("broker", tm.broker.client))
    if tm.settings.result_backend_url_value:
        with contextlib.suppress(LedgerUnavailable):
            servers.append(("ledger", tm.store.client))
    for role, client in servers:
        try:
            warnings = redis_warnings(client, role=role)
        except redis.RedisError:
            continue
        for warning in warnings:
            logger.warning(warning)
