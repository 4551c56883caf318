"""Raw Dramatiq, aury-tasks and the installed peers (Celery, RQ, taskiq), side by side on one private Redis.

For the same no-op sync task and the same worker concurrency (see ``contenders.py`` and
``peers.py``), each contender in its own database of the one server:

* enqueue rate: ``--tasks`` sends per contender from one producer thread, no worker running. The
  contenders take turns in chunks of ``--enqueue-chunk`` sends (A B C C B A …) so that a burst of
  load from elsewhere on the machine hits all alike (messages/s);
* bulk enqueue rate: the same number of tasks through the contender's bulk API, if it has one
  (aury-tasks ``Task.send_many``, RQ ``Queue.enqueue_many``), ``--bulk-chunk`` tasks a call, the
  contenders taking turns likewise; then the server is emptied again;
* drain rate: the worker is started on the ``--tasks`` waiting messages and timed from the first
  acknowledgement to the last, so its start-up is left out. Progress is read from the queue's own
  keys (for Dramatiq, its hash of unacknowledged messages): the task does no I/O at all. A peer
  still draining ``--drain-budget`` s after its first acknowledgement is stopped there: its rate is
  what it did by then, and the rest is dropped (messages/s);
* submit-to-start latency: ``--latency-tasks`` tasks sent one every ``--latency-interval`` ms to
  the idle-running worker, each recording ``time.time()`` at its start minus the submit time it
  was given (p50, p95, p99); then ``--idle-samples`` tasks each sent after ``--idle-gap`` s of
  silence (pooled over rounds);
* idle Redis commands: once the worker has done the deferred work of the tasks it ran (aury-tasks
  adds the ledger's index entries of its tasks at its next heartbeat, within 5 s; the others
  defer nothing), the worker left idle 2 s, then ``INFO stats`` ``total_commands_processed``
  (commands run inside Lua scripts included) over ``--idle-window`` s, less the harness's own
  ``INFO``; per worker process. Only that worker is connected then, and the harness is idle;
* worker peak RSS: ``VmHWM`` of the worker's process tree (the CLI's parent process and its
  worker processes), read just before it is stopped (MiB).
* Redis CPU (main thread) and commands per task, for the single sends and for the drain (worker
  start to its deferred work done), from ``INFO cpu stats commandstats`` samples, the harness's
  own ``INFO`` and polling taken out (see ``rediscost.py``); under the table, aury-tasks' drain
  commands by calls and by time.

Every round runs every contender (in the listed order in odd rounds, reversed in even ones) on
a flushed server, each contender's database emptied after its turn; rates are medians over
``--rounds``, a ratio to raw Dramatiq is the median of the per-round ratios, and latency
percentiles are over the samples of all rounds. Run it from the repository with the project's
venv::

    pip install -e '.[bench]'    # the peers and matplotlib, for the chart
    python benchmarks/run.py     # 2 rounds of 20,000 tasks, all installed peers: ~15 minutes
    python benchmarks/run.py --peers none --rounds 5 --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import redis
from common import free_port, machine_info, percentile, process_tree_cpu, process_tree_peak_rss
from contenders import Side, make_aury_side, make_raw_side, write_worker_modules
from peers import PEERS, available, make_peer
from rediscost import CountingRedis, RedisCost, ServerMeter, calibrate
from report import report

from aury_tasks.broker.embedded import start_server

#: Redis lists the latency task pushes its measurements to (milliseconds, as text).
LATENCY_KEY = "benchmark:latency"
IDLE_LATENCY_KEY = "benchmark:idle-latency"
#: How often the harness looks at Redis while it waits (seconds).
POLL_INTERVAL = 0.005
#: Sends per contender, thrown away, before the first round.
WARMUP_SENDS = 300
#: Seconds a worker is left idle before its Redis commands are counted (after its deferred work).
IDLE_SETTLE = 2.0
#: Seconds a worker may take to finish the deferred work of the tasks it ran (one heartbeat, 5 s).
SETTLE_TIMEOUT = 15.0
#: The contenders that must run: the others are peers, left out when their run fails.
SUBJECTS = ("raw", "aury")


@dataclass
class Rate:
    """``count`` messages handled in ``seconds`` of wall time, using ``cpu_seconds`` of CPU.

    ``complete`` is false for a drain stopped by the time budget before the queue was empty.
    """

    count: int
    seconds: float
    cpu_seconds: float
    complete: bool = True

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else math.inf

    @property
    def cpu_us_each(self) -> float:
        """CPU microseconds per message (NaN where CPU time cannot be read)."""
        return self.cpu_seconds / self.count * 1e6 if self.count else math.nan


@dataclass
class Run:
    """What one contender measured in one round."""

    side: str
    enqueue: Rate
    bulk: Rate | None
    drain: Rate
    worker_start_s: float
    latency_samples: list[float] = field(repr=False)
    idle_samples: list[float] = field(repr=False)
    idle_commands_per_s: float
    peak_rss_mib: float
    #: The server's work for the single sends and for the drain (worker start to settled).
    enqueue_redis: RedisCost = field(default_factory=RedisCost)
    drain_redis: RedisCost = field(default_factory=RedisCost)
    #: The tasks ``drain_redis`` is for: all of them, or 0 for a drain stopped by the budget.
    drain_tasks: int = 0

    def metrics(self) -> dict[str, float]:
        """The round's figures; latency percentiles over this round's samples only."""
        return {
            "enqueue_rate": self.enqueue.per_second,
            "bulk_rate": self.bulk.per_second if self.bulk else math.nan,
            "drain_rate": self.drain.per_second,
            "latency_p50_ms": percentile(self.latency_samples, 50),
            "latency_p95_ms": percentile(self.latency_samples, 95),
            "latency_p99_ms": percentile(self.latency_samples, 99),
            "idle_p50_ms": percentile(self.idle_samples, 50),
            "idle_p95_ms": percentile(self.idle_samples, 95),
            "idle_p99_ms": percentile(self.idle_samples, 99),
            "idle_commands_per_s": self.idle_commands_per_s,
            "peak_rss_mib": self.peak_rss_mib,
            "enqueue_cpu_us": self.enqueue.cpu_us_each,
            "drain_cpu_us": self.drain.cpu_us_each,
            "worker_start_s": self.worker_start_s,
            **self.redis_metrics(),
        }

    def redis_metrics(self) -> dict[str, float]:
        """Redis CPU (main thread and whole process) and commands per task, enqueue and drain."""
        enqueue = self.enqueue_redis.per_task(self.enqueue.count)
        drain = self.drain_redis.per_task(self.drain_tasks)
        metrics = {f"enqueue_redis_{k}": v for k, v in enqueue.items()}
        metrics.update({f"drain_redis_{k}": v for k, v in drain.items()})
        metrics["redis_cpu_us"] = enqueue["cpu_us"] + drain["cpu_us"]
        metrics["redis_cpu_all_us"] = enqueue["cpu_all_us"] + drain["cpu_all_us"]
        return metrics


class BenchmarkError(RuntimeError):
    """A run could not be completed (a worker died, tasks went missing)."""


# Measuring


def reset_redis(client: redis.Redis) -> None:
    """Empty the server and compact its AOF, so that no AOF rewrite lands in a measurement."""
    client.config_set("auto-aof-rewrite-percentage", 0)  # rewrites happen here only
    client.flushall()
    client.bgrewriteaof()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            return
        time.sleep(0.02)


def measure_sends(
    sides: list[Side],
    count: int,
    chunk: int,
    *,
    bulk: bool = False,
    meter: ServerMeter | None = None,
    costs: dict[str, RedisCost] | None = None,
) -> dict[str, Rate]:
    """Send ``count`` no-op tasks per contender, the contenders taking turns in chunks.

    With ``bulk``, through each contender's bulk API (one call per chunk); the others are skipped.
    With ``meter``, the server is sampled between chunks (outside the timed sends) and each
    chunk's cost is added to its contender's entry in ``costs``.
    """
    sides = [side for side in sides if side.send_bulk] if bulk else sides
    rates = {side.name: Rate(0, 0.0, 0.0) for side in sides}
    last = meter.sample() if meter else None
    turn = 0
    while any(rate.count < count for rate in rates.values()):
        for side in sides if turn % 2 == 0 else sides[::-1]:
            rate = rates[side.name]
            todo = min(chunk, count - rate.count)
            send = side.send_bulk if bulk else side.send_noops
            assert send is not None
            cpu, started = time.thread_time(), time.perf_counter()
            send(todo)
            rate.seconds += time.perf_counter() - started
            rate.cpu_seconds += time.thread_time() - cpu
            rate.count += todo
            if meter and last and costs is not None:
                now = meter.sample()
                costs.setdefault(side.name, RedisCost()).add(last, now, meter.calibration)
                last = now
        turn += 1
    return rates


@contextmanager
def worker_process(side: Side, workdir: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run the contender's worker, its output to ``log_path``; stop it (SIGTERM, then SIGKILL) after."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            side.worker_argv,
            cwd=workdir,
            env=side.worker_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def check_alive(process: subprocess.Popen[bytes], log_path: Path) -> None:
    if process.poll() is not None:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise BenchmarkError(f"worker exited with code {process.returncode}:\n" + "\n".join(tail))


def measure_drain(
    side: Side,
    client: redis.Redis,
    count: int,
    process: subprocess.Popen[bytes],
    log_path: Path,
    budget: float | None = None,
) -> tuple[Rate, float]:
    """Wait for the just-started worker to empty the queue.

    The queue counts as empty when ``side.remaining`` reads 0 twice in a row (a message between
    two of a peer's keys can read as done for an instant); the first of the two reads ends the
    span. A contender that can drop what waits (``side.discard_waiting``) is stopped ``budget``
    seconds after its first acknowledgement.

    Returns:
      tuple: the rate from the first acknowledgement seen to the last (CPU: the worker's
      processes over the same span), and the seconds from the worker's start to that first
      acknowledgement.
    """

    def cpu() -> float:
        return process_tree_cpu(process.pid, reaped=side.reaped_cpu)

    spawned = time.perf_counter()
    deadline = time.monotonic() + 120 + count / 100
    first_at: float | None = None
    empty_at: float | None = None
    left_at_first, cpu_at_first, cpu_at_empty = count, 0.0, 0.0
    while time.monotonic() < deadline:
        left = side.remaining(client)
        now = time.perf_counter()
        if first_at is None and left < count:
            first_at, left_at_first, cpu_at_first = now, left, cpu()
        if first_at is not None and left == 0:
            if empty_at is not None:
                if side.dead_letters(client):
                    raise BenchmarkError(f"{side.name}: messages were dead-lettered; see {log_path}")
                drain = Rate(left_at_first, empty_at - first_at, cpu_at_empty - cpu_at_first)
                return drain, first_at - spawned
            empty_at, cpu_at_empty = now, cpu()
        elif first_at is not None:
            empty_at = None
            if budget is not None and side.discard_waiting is not None and now - first_at > budget:
                rate = Rate(left_at_first - left, now - first_at, cpu() - cpu_at_first, complete=False)
                side.discard_waiting(client)
                wait_until_empty(side, client, process, log_path)
                return rate, first_at - spawned
        check_alive(process, log_path)
        time.sleep(POLL_INTERVAL)
    raise BenchmarkError(f"{side.name}: the queue was not drained in time; see {log_path}")


def wait_until_empty(
    side: Side, client: redis.Redis, process: subprocess.Popen[bytes], log_path: Path
) -> None:
    """Wait for the tasks the worker has taken to finish (after the waiting ones were dropped)."""
    deadline = time.monotonic() + 60
    while side.remaining(client):
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{side.name}: tasks handed out did not finish; see {log_path}")
        check_alive(process, log_path)
        time.sleep(POLL_INTERVAL)


def wait_for_results(client: redis.Redis, key: str, expected: int, timeout: float) -> list[float]:
    deadline = time.monotonic() + timeout
    while client.llen(key) < expected:
        if time.monotonic() > deadline:
            raise BenchmarkError(f"only {client.llen(key)} of {expected} latency tasks ran")
        time.sleep(POLL_INTERVAL)
    return [float(value) for value in client.lrange(key, 0, -1)]


def measure_latency(side: Side, client: redis.Redis, count: int, interval: float) -> list[float]:
    """Send ``count`` latency tasks on a fixed schedule; return their latencies in ms."""
    started = time.perf_counter()
    for i in range(count):
        pause = started + i * interval - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        side.send_latency(time.time(), LATENCY_KEY)
    return wait_for_results(client, LATENCY_KEY, count, timeout=60 + count * interval)


def measure_idle_latency(side: Side, client: redis.Redis, samples: int, gap: float) -> list[float]:
    """Send one latency task after each ``gap`` seconds of silence; return the latencies in ms."""
    for i in range(samples):
        time.sleep(gap)
        side.send_latency(time.time(), IDLE_LATENCY_KEY)
        wait_for_results(client, IDLE_LATENCY_KEY, i + 1, timeout=30)
    return wait_for_results(client, IDLE_LATENCY_KEY, samples, timeout=30)


def wait_settled(side: Side, client: redis.Redis, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until the contender's worker has done the deferred work of the tasks it ran."""
    deadline = time.monotonic() + timeout
    while not side.settled(client):
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{side.name}: its worker's deferred work was not done within {timeout:g} s")
        time.sleep(0.05)


def commands_per_second(client: redis.Redis, window: float) -> float:
    """Commands the server processed per second over ``window`` seconds, less this call's own ``INFO``.

    ``total_commands_processed`` counts a command once it has run, so of the two ``INFO`` calls
    only the first falls in the difference.
    """
    before = client.info("stats")["total_commands_processed"]
    started = time.perf_counter()
    time.sleep(window)
    after = client.info("stats")["total_commands_processed"]
    return (after - before - 1) / (time.perf_counter() - started)


def run_side(
    side: Side,
    enqueue: Rate,
    bulk: Rate | None,
    client: CountingRedis,
    args: argparse.Namespace,
    workdir: Path,
    round_no: int,
    meter: ServerMeter,
) -> Run:
    """Start the contender's worker on its waiting messages: drain, latencies, idle figures; stop it.

    The server's work for the drain is taken from just before the worker starts to once it has
    done the deferred work of the tasks it ran (``wait_settled``), less the harness's polling.
    """
    log_path = workdir / f"worker-{side.name}-{round_no}.log"
    budget = None if side.name in SUBJECTS else args.drain_budget
    client.sent.clear()
    before = meter.sample()
    with worker_process(side, workdir, log_path) as process:
        drain, worker_start = measure_drain(side, client, args.tasks, process, log_path, budget)
        wait_settled(side, client)
        drain_redis = meter.span(before, client.sent.copy())
        latencies = measure_latency(side, client, args.latency_tasks, args.latency_interval / 1000)
        idle = measure_idle_latency(side, client, args.idle_samples, args.idle_gap)
        wait_settled(side, client)
        time.sleep(IDLE_SETTLE)
        idle_commands = commands_per_second(client, args.idle_window) / side.worker_processes
        peak_rss = process_tree_peak_rss(process.pid)
        check_alive(process, log_path)
    client.flushdb()
    drain_tasks = args.tasks if drain.complete else 0
    return Run(side.name, enqueue, bulk, drain, worker_start, latencies, idle, idle_commands, peak_rss,
               drain_redis=drain_redis, drain_tasks=drain_tasks)  # fmt: skip


def print_run(run: Run, round_no: int) -> None:
    m = run.metrics()
    bulk = f"bulk {m['bulk_rate']:7,.0f}/s  " if run.bulk else " " * 19
    cut = "*" if not run.drain.complete else " "
    print(
        f"round {round_no} {run.side:<6}  enqueue {m['enqueue_rate']:6,.0f}/s  {bulk}"
        f"drain {m['drain_rate']:6,.0f}/s{cut} latency p50 {m['latency_p50_ms']:5.1f} "
        f"p95 {m['latency_p95_ms']:5.1f} p99 {m['latency_p99_ms']:6.1f} ms  "
        f"idle p50 {m['idle_p50_ms']:6.1f} ms  idle {m['idle_commands_per_s']:5.2f} cmd/s  "
        f"RSS {m['peak_rss_mib']:5.1f} MiB  start {m['worker_start_s']:4.2f} s  "
        f"CPU/task: send {m['enqueue_cpu_us']:4.0f} us, worker {m['drain_cpu_us']:4.0f} us  "
        f"Redis/task: send {m['enqueue_redis_cpu_us']:5.1f} us {m['enqueue_redis_commands']:5.2f} cmd, "
        f"drain {m['drain_redis_cpu_us']:5.1f} us {m['drain_redis_commands']:5.2f} cmd",
        flush=True,
    )


def run_round(
    sides: list[Side],
    clients: dict[str, CountingRedis],
    meter: ServerMeter,
    args: argparse.Namespace,
    workdir: Path,
    round_no: int,
    failures: dict[str, str],
) -> dict[str, Run]:
    """Bulk and single sends for all, then for each in turn: start its worker, measure, stop.

    A peer whose run fails is reported in ``failures`` and left out of the next rounds; a
    failure of raw Dramatiq or aury-tasks ends the benchmark.
    """
    reset_redis(meter.client)
    bulk_rates = measure_sends(sides, args.tasks, args.bulk_chunk, bulk=True)
    reset_redis(meter.client)
    enqueue_costs: dict[str, RedisCost] = {}
    rates = measure_sends(sides, args.tasks, args.enqueue_chunk, meter=meter, costs=enqueue_costs)
    results = {}
    for side in sides:
        try:
            run = run_side(side, rates[side.name], bulk_rates.get(side.name), clients[side.name], args,
                           workdir, round_no, meter)  # fmt: skip
            run.enqueue_redis = enqueue_costs.get(side.name, RedisCost())
        except BenchmarkError as exc:
            if side.name in SUBJECTS:
                raise
            failures[side.name] = f"round {round_no}: {exc}"
            print(f"round {round_no} {side.name}: failed, left out from now on: {exc}", flush=True)
            clients[side.name].flushdb()
            continue
        results[side.name] = run
        print_run(run, round_no)
    return results


def warm_up(sides: list[Side], client: redis.Redis) -> None:
    """Exercise each producer path once, so the first round does not pay for first calls."""
    for side in sides:
        assert side.send_noops is not None
        side.send_noops(WARMUP_SENDS)
        if side.send_bulk:
            side.send_bulk(WARMUP_SENDS)
    reset_redis(client)


# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Raw Dramatiq vs aury-tasks (and Celery, RQ, taskiq if installed) on one private Redis.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--rounds", type=int, default=2, help="rounds, each running every contender; rates are medians")
    add("--tasks", type=int, default=20_000, help="tasks sent (single, bulk) and drained per contender")
    add("--latency-tasks", type=int, default=500, help="tasks sent for the latency figures")
    add("--latency-interval", type=float, default=20.0, help="milliseconds between latency tasks")
    add("--idle-samples", type=int, default=8, help="tasks sent each after an idle gap, per round (0: none)")
    add("--idle-gap", type=float, default=3.0, help="seconds of silence before each idle sample")
    add(
        "--idle-window",
        type=float,
        default=31.0,
        help="seconds an idle worker's commands are counted (31: one aury fallback fetch falls in it)",
    )
    add("--enqueue-chunk", type=int, default=200, help="sends per turn while the contenders take turns")
    add("--bulk-chunk", type=int, default=1000, help="tasks per bulk call (aury send_many, RQ enqueue_many)")
    add("--drain-budget", type=float, default=30.0, help="seconds after which a peer's drain is stopped")
    add("--threads", type=int, default=8, help="worker threads per process (taskiq: async tasks)")
    add("--processes", type=int, default=1, help="worker processes (Dramatiq, aury, taskiq)")
    add("--peers", default=",".join(PEERS), help="peers to run when installed, comma-separated, or 'none'")
    add("--chart", type=Path, default=Path(__file__).parent / "latency.png", metavar="PATH",
        help="where to save the latency chart (needs matplotlib)")  # fmt: skip
    add("--no-chart", action="store_true", help="do not draw the latency chart")
    add("--json", type=Path, default=None, metavar="PATH", help="also save the results here")
    add("--keep-workdir", action="store_true", help="keep the temporary directory (worker and server logs)")
    args = parser.parse_args(argv)
    for name in ("rounds", "tasks", "latency_tasks", "enqueue_chunk", "bulk_chunk", "threads", "processes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    if min(args.idle_samples, args.latency_interval, args.idle_gap) < 0:
        parser.error("--idle-samples, --latency-interval and --idle-gap must not be negative")
    if args.idle_window <= 0 or args.drain_budget <= 0:
        parser.error("--idle-window and --drain-budget must be positive")
    peers = [] if args.peers.strip() == "none" else [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"--peers: unknown {', '.join(unknown)} (known: {', '.join(PEERS)}, or none)")
    args.peers = ",".join(peers) or "none"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Settings from the environment would make the contenders differ: drop them here and for
    # the workers (the harness-side aury settings also ignore any .env file).
    prefixes = ("TASK_", "AURY_TASKS_", "dramatiq_", "CELERY_", "RQ_")
    for key in [k for k in os.environ if k.startswith(prefixes)]:
        del os.environ[key]
    env = dict(os.environ)
    peers, notes = available([] if args.peers == "none" else args.peers.split(","))
    for note in notes:
        print(f"# {note}")
    workdir = Path(tempfile.mkdtemp(prefix="aury-bench-"))
    server = start_server(workdir / "redis", port=free_port())
    server_client = redis.Redis.from_url(server.url)
    sides: list[Side] = []
    clients: dict[str, CountingRedis] = {}
    failures: dict[str, str] = {}
    try:
        modules_dir = write_worker_modules(workdir)
        sides.append(make_raw_side(server.url, workdir, args, env))
        sides.append(make_aury_side(server.url, workdir, modules_dir, args, env))
        for name in peers:
            sides.append(make_peer(name, server.url, workdir, args, env))
        clients = {side.name: CountingRedis.connect(side.url) for side in sides}
        info = machine_info(server, dramatiq=dramatiq.__version__, **peer_versions(peers))
        print(f"# {server.version} at {server.url}; workdir {workdir}", flush=True)
        warm_up(sides, server_client)
        info["harness_idle_commands_per_s"] = round(commands_per_second(server_client, IDLE_SETTLE), 2)
        meter = ServerMeter(
            server_client, calibrate(server_client, lambda: sides[0].remaining(clients["raw"]))
        )
        info["harness_redis_cpu_us"] = {
            "per_info_sample": round(meter.calibration.sample_cpu[0] * 1e6, 2),
            "per_polling_command": round(meter.calibration.poll_cpu[0] * 1e6, 2),
        }
        rounds = []
        for round_no in range(1, args.rounds + 1):
            running = [side for side in sides if side.name not in failures]
            order = running if round_no % 2 else running[::-1]
            rounds.append(run_round(order, clients, meter, args, workdir, round_no, failures))
        report(args, info, rounds, {side.name: side.label for side in sides}, notes, failures)
        return 2 if failures else 0
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        args.keep_workdir = True
        return 2
    finally:
        for side in sides:
            side.close()
        for client in clients.values():
            client.close()
        server_client.close()
        server.stop()
        if args.keep_workdir or failures:
            print(f"workdir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def peer_versions(peers: list[str]) -> dict[str, Any]:
    """The installed versions of the peers' packages, for the report."""
    from importlib.metadata import version

    packages = {"celery": ["celery", "kombu"], "rq": ["rq"], "taskiq": ["taskiq", "taskiq-redis"]}
    return {package: version(package) for name in peers for package in packages[name]}


if __name__ == "__main__":
    sys.exit(main())
