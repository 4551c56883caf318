"""The REST API's latency under a constant request rate, while a worker drains a stream of tasks.

On one private Redis (the embedded Valkey on a free loopback port in a temporary directory, AOF
on as in production, as ``run.py`` starts it), real processes: ``aum serve`` (uvicorn, bearer
token in ``TASK_API_TOKEN``), ``aum worker`` and a producer process sending ``--stream-rate``
tasks a second at fixed times. Before the load, ``--tasks`` tasks are sent (``Task.send_many``)
and drained by the worker, so the ledger holds that many finished records with their results.

Then, for each endpoint in turn, an open-loop load of ``--rate`` requests a second for
``--duration`` seconds (after ``--warmup`` seconds not counted):

* ``GET /api/v1/tasks/{id}``, a random id of the finished tasks each time;
* ``GET /api/v1/tasks?page_size=50``, the newest page (the stream's tasks: pending, running, done).

The load generator is this script: one asyncio event loop, ``--connections`` keep-alive HTTP/1.1
connections over plain asyncio streams (a request line, the token header, a response read by its
``Content-Length``: tens of microseconds of client CPU a request, far less than an httpx client).
Request ``i`` is due at ``start + i / rate`` whatever happened to the others; its latency runs
from that due time to the end of its response, so a stall of the server (or of a connection all
are waiting for) counts against every request it delays, not only the one it hit (no
coordinated omission). A request waits for a free connection when all are busy. Figures are
nearest-rank percentiles over every counted request; errors are answers other than 200, broken
connections and requests not answered 5 s after their due time (which count as 5 s), and an
endpoint with errors misses its target. A phase lasts ``--warmup + --duration`` s, plus 5 s at
most. The worker's drain rate is the ledger's successes of the stream's queue over each phase;
the server's CPU (``/proc``) over each phase, divided by its requests, is shown too.

Run it from the repository with the project's venv::

    python benchmarks/api.py                   # 10,000 tasks, 30 s per endpoint: about 1.5 minutes
    python benchmarks/api.py --duration 10 --tasks 2000 --json /tmp/api.json
    python benchmarks/api.py --endpoints page --rate 100     # one endpoint, at another rate
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import free_port, machine_info, percentile, process_tree_cpu

from aury_tasks import TaskManager, TaskSettings
from aury_tasks.broker.embedded import start_server
from aury_tasks.core.status import TaskStatus
from aury_tasks.tasks.task import Task

#: The queue and the registered name of the task the fill and the stream send.
QUEUE = "bench_api"
ACTOR = "bench_api.work"
#: Seconds a request may take before it counts as an error.
REQUEST_TIMEOUT = 5.0
#: Tasks a ``send_many`` call of the fill sends.
FILL_CHUNK = 1_000
#: Targets: p99 (ms) of each endpoint at ``--rate`` requests a second.
TARGETS = {"one": 10.0, "page": 20.0}
LABELS = {"one": "GET /api/v1/tasks/{id}", "page": "GET /api/v1/tasks?page_size=50"}

TASK_MODULE = f'''"""The task the API benchmark sends, found by ``aum worker --modules`` and ``aum serve``."""

from aury_tasks import TaskManager

tm = TaskManager.get_instance()


@tm.conditional_task(queue_name="{QUEUE}", actor_name="{ACTOR}")
def work(n: int) -> dict:
    """A small result, so that a record looks like most: arguments, a result, timings."""
    return {{"n": n, "square": n * n}}
'''


class BenchmarkError(RuntimeError):
    """The run could not be completed (a process died, the server never answered)."""


# The processes


@dataclass
class Service:
    """One ``aum`` subprocess (``serve`` or ``worker``) and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def check(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-15:]
            raise BenchmarkError(
                f"{self.name} exited with code {self.process.returncode}:\n" + "\n".join(tail)
            )


@contextmanager
def service(name: str, args: list[str], workdir: Path, env: dict[str, str]) -> Iterator[Service]:
    """Run ``aum ARGS``, its output to ``<workdir>/<name>.log``; SIGTERM it after (SIGKILL after 20 s)."""
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "aury_tasks.cli", *args], cwd=workdir, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   start_new_session=True)  # fmt: skip
    try:
        yield Service(name, process, log_path)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def make_manager(url: str, workdir: Path) -> tuple[TaskManager, Task[Any, Any]]:
    """The default TaskManager in producer mode on ``url``, with the work task registered."""
    for key in [k for k in os.environ if k.startswith("TASK_")]:
        del os.environ[key]
    settings = TaskSettings.load(_env_file=None, broker_url=url, data_dir=str(workdir / ".aum"))
    tm = TaskManager.get_instance()
    tm.configure(settings=settings, run_mode="producer")

    @tm.conditional_task(queue_name=QUEUE, actor_name=ACTOR)
    def work(n: int) -> dict[str, int]:
        return {"n": n, "square": n * n}

    return tm, work


def send_stream(url: str, workdir: str, rate: float, stop: Any, sent: Any) -> None:
    """In a process of its own: send ``rate`` tasks a second, each at its due time, until ``stop``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness stops it
    _, work = make_manager(url, Path(workdir))
    start = time.monotonic()
    n = 0
    while not stop.is_set():
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            stop.wait(delay)
            continue
        work.send(n)
        n += 1
        sent.value = n


@contextmanager
def stream(url: str, workdir: Path, rate: float) -> Iterator[Any]:
    """Run :func:`send_stream` in a spawned process; yields its shared count of sends."""
    context = multiprocessing.get_context("spawn")
    stop, sent = context.Event(), context.Value("l", 0)
    process = context.Process(target=send_stream, args=(url, str(workdir), rate, stop, sent), daemon=True)
    process.start()
    try:
        yield sent
    finally:
        stop.set()
        process.join(10)
        if process.is_alive():
            process.kill()


def wait_for_http(url: str, server: Service, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers 200 (the server has started)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        server.check()
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{url} did not answer within {timeout:g} s")
        time.sleep(0.1)


def succeeded(tm: TaskManager) -> int:
    """Tasks of the benchmark's queue that succeeded, in the ledger."""
    return tm.store.count_by_status(QUEUE, [TaskStatus.SUCCESS])[TaskStatus.SUCCESS]


def fill(
    tm: TaskManager, work: Task[Any, Any], count: int, worker: Service, timeout: float = 300
) -> list[str]:
    """Send ``count`` tasks and wait for the worker to finish them; their ids."""
    ids: list[str] = []
    for first in range(0, count, FILL_CHUNK):
        ids += [
            handle.id
            for handle in work.send_many([(n,) for n in range(first, min(count, first + FILL_CHUNK))])
        ]
    deadline = time.monotonic() + timeout
    while succeeded(tm) < count:
        worker.check()
        if time.monotonic() > deadline:
            raise BenchmarkError(f"the worker did not finish the {count:,} fill tasks in {timeout:g} s")
        time.sleep(0.2)
    return ids


# The load


@dataclass
class Phase:
    """What the load on one endpoint gave (latencies in ms, one per counted request, errors included)."""

    endpoint: str
    latencies: list[float] = field(repr=False, default_factory=list)
    errors: int = 0
    #: Seconds from the first counted request's due time to the last counted response.
    seconds: float = 0.0
    #: Counted requests that were due (answered or not).
    due: int = 0
    #: The worker's successes a second, the stream's sends a second, over the phase.
    drain_rate: float = math.nan
    stream_rate: float = math.nan
    #: CPU milliseconds of the ``aum serve`` process per counted request.
    server_cpu_ms: float = math.nan
    error_samples: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Answers (200) a second, over the phase."""
        return self.answered / self.seconds if self.seconds else math.nan

    @property
    def answered(self) -> int:
        """Counted requests answered 200."""
        return len(self.latencies) - self.errors


class Connection:
    """One keep-alive HTTP/1.1 connection: a GET, its answer read by ``Content-Length``."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def drive(
    phase: Phase,
    port: int,
    token: str,
    path: Callable[[int], str],
    *,
    rate: float,
    warmup: float,
    duration: float,
    connections: int,
) -> None:
    """Send ``rate`` requests a second to ``path(i)`` for ``warmup + duration`` seconds (open loop)."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection("127.0.0.1", port))
    headers = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    skipped, total = round(warmup * rate), round((warmup + duration) * rate)
    ends: list[float] = []

    async def send(request: bytes) -> tuple[int, bytes]:
        connection = await pool.get()
        try:
            return await connection.get(request)
        except BaseException:  # a broken or timed-out connection is opened afresh by the next request
            connection.close()
            raise
        finally:
            pool.put_nowait(connection)

    async def one(i: int, due: float) -> None:
        request = f"GET {path(i)} HTTP/1.1\r\n{headers}".encode()
        try:
            status, body = await asyncio.wait_for(send(request), due + REQUEST_TIMEOUT - loop.time())
            error = None if status == 200 else f"{status} {body[:200]!r}"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        done = loop.time()
        if i < skipped:
            return
        ends.append(done)
        phase.latencies.append((done - due) * 1000)  # a request timed out counts as its 5 s
        if error is not None:
            phase.errors += 1
            if len(phase.error_samples) < 5:
                phase.error_samples.append(error)

    requests = []
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        requests.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*requests)
    while not pool.empty():
        pool.get_nowait().close()
    phase.due = total - skipped
    phase.seconds = max(ends) - (start + skipped / rate) if ends else 0.0


def measure(
    args: argparse.Namespace, endpoint: str, path: Callable[[int], str], port: int, token: str,
    tm: TaskManager, server: Service, sent: Any,
) -> Phase:  # fmt: skip
    """One endpoint's phase: the load, and what the worker, the stream and the server did meanwhile."""
    phase = Phase(endpoint)
    before = (time.monotonic(), succeeded(tm), sent.value, process_tree_cpu(server.process.pid))
    asyncio.run(drive(phase, port, token, path, rate=args.rate, warmup=args.warmup, duration=args.duration,
                      connections=args.connections))  # fmt: skip
    after = (time.monotonic(), succeeded(tm), sent.value, process_tree_cpu(server.process.pid))
    server.check()
    elapsed = after[0] - before[0]
    phase.drain_rate = (after[1] - before[1]) / elapsed
    phase.stream_rate = (after[2] - before[2]) / elapsed
    phase.server_cpu_ms = (after[3] - before[3]) * 1000 / (phase.due + round(args.warmup * args.rate))
    return phase


# Report


def aligned(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()  # fmt: skip

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def figures(phase: Phase) -> dict[str, float]:
    values = phase.latencies
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "p99": percentile(values, 99),
            "max": max(values, default=math.nan)}  # fmt: skip


def summary_table(args: argparse.Namespace, phases: list[Phase]) -> str:
    headers = ["endpoint", "answered", "p50 ms", "p95 ms", "p99 ms", "max ms", "rate/s", "errors",
               "server CPU/req", "worker drain/s", "target", "met?"]  # fmt: skip
    rows = []
    for phase in phases:
        shown = figures(phase)
        target = TARGETS[phase.endpoint]
        met = phase.errors == 0 and shown["p99"] < target
        rows.append([LABELS[phase.endpoint], f"{phase.answered:,}",
                     *(f"{shown[name]:.2f}" for name in ("p50", "p95", "p99", "max")), f"{phase.rate:.1f}",
                     str(phase.errors), f"{phase.server_cpu_ms:.2f} ms", f"{phase.drain_rate:.1f}",
                     f"p99 < {target:g} ms at {args.rate:g}/s", "PASS" if met else "MISS"])  # fmt: skip
    return aligned(headers, rows, right=set(range(1, 10)))


def git_commit() -> str:
    try:
        here = Path(__file__).parent
        found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                               cwd=here, check=True, timeout=10)  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=here, check=True, timeout=10).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return found.stdout.strip() + (" (tree modified)" if dirty.strip() else "")


def reproduce_command(args: argparse.Namespace) -> str:
    options = [
        "duration",
        "warmup",
        "rate",
        "connections",
        "tasks",
        "stream_rate",
        "worker_threads",
        "server_workers",
        "seed",
    ]
    return (
        "python benchmarks/api.py "
        + " ".join(f"--{name.replace('_', '-')} {getattr(args, name):g}" for name in options)
        + f" --endpoints {','.join(args.endpoints)}"
        + (" --access-log" if args.access_log else "")
    )


def report(args: argparse.Namespace, info: dict[str, Any], phases: list[Phase]) -> None:
    print()
    print(f"{args.tasks:,} finished tasks in the ledger, a stream of {args.stream_rate:g} tasks/s drained "
          f"by aum worker -c {args.worker_threads}; {args.rate:g} requests/s for {args.duration:g} s per "
          f"endpoint (after {args.warmup:g} s of warm-up) over {args.connections} keep-alive connections, "
          "open loop (latency from each request's due time)")  # fmt: skip
    print(summary_table(args, phases))
    for phase in phases:
        print(f"{LABELS[phase.endpoint]}: {phase.due:,} requests due, stream sent {phase.stream_rate:.1f}/s, "
              f"worker drained {phase.drain_rate:.1f}/s")  # fmt: skip
        for sample in phase.error_samples:
            print(f"  error: {sample}")
    print()
    print(f"machine: {info['cpus']} CPU(s) {info['cpu']}, load at start {info['load_average']}; "
          f"{info['platform']}; Python {info['python']}; aury-tasks {info['aury_tasks']} at {info['commit']};"
          f" redis-py {info['redis_py']}; {info['server']}; run took {info['run_seconds']:.0f} s"
          )  # fmt: skip
    print(f"reproduce: {reproduce_command(args)}")
    if args.json:
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        results = [{"endpoint": LABELS[p.endpoint], **figures(p), "answered": p.answered,
                    "errors": p.errors, "rate": p.rate, "drain_rate": p.drain_rate,
                    "stream_rate": p.stream_rate, "server_cpu_ms": p.server_cpu_ms,
                    "target_p99_ms": TARGETS[p.endpoint]}
                   for p in phases]  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"config": config, "machine": info, "results": results}, indent=2))
        print(f"saved: {args.json}")


# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Latency of GET /api/v1/tasks/{id} and of a page of 50 tasks under a constant request "
        "rate (open loop), with aum serve, aum worker and a stream of tasks on a private Redis.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--duration", type=float, default=30.0, help="seconds of counted load per endpoint")
    add("--warmup", type=float, default=3.0, help="seconds of load per endpoint before counting")
    add("--rate", type=float, default=200.0, help="requests a second")
    add("--connections", type=int, default=8, help="keep-alive connections of the load generator")
    add("--tasks", type=int, default=10_000, help="finished tasks in the ledger before the load")
    add("--stream-rate", type=float, default=100.0, help="tasks a second sent (and drained) during the load")
    add("--worker-threads", type=int, default=8, help="aum worker --concurrency")
    add("--server-workers", type=int, default=2, help="aum serve --workers (server processes)")
    parser.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="aum serve --access-log (a log line a request) or --no-access-log",
    )
    add("--endpoints", default="one,page", help="which loads to run, in order: one (a task by id), page")
    add("--seed", type=int, default=1, help="seed of the random task ids")
    add("--json", type=Path, default=None, metavar="PATH", help="also save the results here")
    add("--keep-workdir", action="store_true", help="keep the temporary directory (server, worker logs)")
    args = parser.parse_args(argv)
    for name in ("duration", "rate", "connections", "tasks", "stream_rate", "worker_threads"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be more than 0")
    args.endpoints = [name.strip() for name in args.endpoints.split(",") if name.strip()]
    if not args.endpoints or set(args.endpoints) - set(LABELS):
        parser.error(f"--endpoints takes a comma-separated list of {', '.join(LABELS)}")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return args


def run(args: argparse.Namespace, url: str, workdir: Path) -> list[Phase]:
    modules_dir = workdir / "bench_modules"
    (modules_dir / "bench_api").mkdir(parents=True)
    (modules_dir / "bench_api" / "tasks.py").write_text(TASK_MODULE)
    token, port = secrets.token_hex(32), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASK_")}
    env.update({"TASK_BROKER_URL": url, "TASK_DATA_DIR": str(workdir / ".aum"), "TASK_API_TOKEN": token,
                "PYTHONUNBUFFERED": "1"})  # fmt: skip
    modules = ["--modules", str(modules_dir)]
    tm, work = make_manager(url, workdir)
    worker_args = ["worker", *modules, "-q", QUEUE, "-c", str(args.worker_threads)]
    serve_args = [
        "serve",
        *modules,
        "--port",
        str(port),
        "--workers",
        str(args.server_workers),
        "--access-log" if args.access_log else "--no-access-log",
    ]
    try:
        with service("worker", worker_args, workdir, env) as worker, \
             service("serve", serve_args, workdir, env) as server:  # fmt: skip
            started = time.perf_counter()
            ids = fill(tm, work, args.tasks, worker)
            print(f"filled: {args.tasks:,} tasks sent and drained in {time.perf_counter() - started:.1f} s",
                  flush=True)  # fmt: skip
            wait_for_http(f"http://127.0.0.1:{port}/healthz", server)
            rng = random.Random(args.seed)
            paths = {
                "one": lambda i: f"/api/v1/tasks/{rng.choice(ids)}",
                "page": lambda i: "/api/v1/tasks?page_size=50",
            }
            phases = []
            with stream(url, workdir, args.stream_rate) as sent:
                time.sleep(1)  # the stream's first tasks reach the worker
                for endpoint in args.endpoints:
                    path = paths[endpoint]
                    print(f"load: {LABELS[endpoint]}, {args.rate:g}/s for {args.warmup + args.duration:g} s",
                          flush=True)  # fmt: skip
                    phases.append(measure(args, endpoint, path, port, token, tm, server, sent))
                    worker.check()
            return phases
    finally:
        tm.close()


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that the processes and the server are stopped on the way out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    began = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="aury-api-bench-"))
    server = start_server(workdir / "redis", port=free_port())
    try:
        info = machine_info(server, commit=git_commit())
        print(f"# {server.version} at {server.url}; workdir {workdir}", flush=True)
        phases = run(args, server.url, workdir)
        info["run_seconds"] = time.perf_counter() - began
        report(args, info, phases)
        return 0
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        args.keep_workdir = True
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        server.stop()
        if args.keep_workdir:
            print(f"workdir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
