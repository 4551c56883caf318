"""Raw Dramatiq versus aury-tasks, side by side on one private Redis.

For the same no-op sync task and the same worker concurrency (see ``contenders.py``):

* enqueue rate: ``--tasks`` sends per side from one producer thread, no worker running. The two
  sides take turns in chunks of ``--enqueue-chunk`` sends (A B B A …) so that a burst of load
  from elsewhere on the machine hits both alike (messages/s);
* drain rate: the worker is started on the ``--tasks`` waiting messages and timed from the first
  acknowledgement to the last, so its start-up is left out. Progress is read from Dramatiq's
  own hash of unacknowledged messages: the task does no I/O at all (messages/s);
* submit-to-start latency: ``--latency-tasks`` tasks sent one every ``--latency-interval`` ms to
  the idle-running worker, each recording ``time.time()`` at its start minus the submit time it
  was given (p50, p99); then ``--idle-samples`` tasks each sent after ``--idle-gap`` s of silence.

Every round runs both sides (raw first in odd rounds, aury first in even ones) on a flushed
server; figures are medians over ``--rounds``, and the ratio is the median of the per-round
ratios. Run it from the repository with the project's venv::

    python benchmarks/run.py                         # 3 rounds of 20,000 tasks, ~4 minutes
    python benchmarks/run.py --rounds 5 --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import statistics
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
from common import free_port, machine_info, percentile, save_json
from contenders import Side, make_aury_side, make_raw_side, write_worker_modules

from aury_tasks.embedded import start_server

#: Redis lists the latency task pushes its measurements to (milliseconds, as text).
LATENCY_KEY = "benchmark:latency"
IDLE_LATENCY_KEY = "benchmark:idle-latency"
#: How often the harness looks at Redis while it waits (seconds).
POLL_INTERVAL = 0.005
#: Sends per side, thrown away, before the first round.
WARMUP_SENDS = 300

#: The table's rows: (metric, label, higher is better, target ratio).
ROWS: list[tuple[str, str, bool, float | None]] = [
    ("enqueue_rate", "enqueue rate (msg/s)", True, 0.95),
    ("drain_rate", "drain rate (msg/s)", True, 0.90),
    ("latency_p50_ms", "submit→start latency p50 (ms)", False, None),
    ("latency_p99_ms", "submit→start latency p99 (ms)", False, None),
    ("idle_latency_ms", "latency after {gap:g} s idle, median of all (ms)", False, None),
    ("enqueue_cpu_us", "producer CPU per send (µs)", False, None),
    ("drain_cpu_us", "worker CPU per task while draining (µs)", False, None),
    ("worker_start_s", "worker start → first task (s)", False, None),
]


@dataclass
class Rate:
    """``count`` messages handled in ``seconds`` of wall time, using ``cpu_seconds`` of CPU."""

    count: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else math.inf

    @property
    def cpu_us_each(self) -> float:
        """CPU microseconds per message (NaN where CPU time cannot be read)."""
        return self.cpu_seconds / self.count * 1e6 if self.count else math.nan


@dataclass
class Run:
    """What one side measured in one round."""

    side: str
    enqueue: Rate
    drain: Rate
    worker_start_s: float
    latency_samples: list[float] = field(repr=False)
    idle_samples: list[float] = field(repr=False)

    def metrics(self) -> dict[str, float]:
        return {
            "enqueue_rate": self.enqueue.per_second,
            "drain_rate": self.drain.per_second,
            "latency_p50_ms": percentile(self.latency_samples, 50),
            "latency_p99_ms": percentile(self.latency_samples, 99),
            "idle_latency_ms": statistics.median(self.idle_samples) if self.idle_samples else math.nan,
            "worker_start_s": self.worker_start_s,
            "enqueue_cpu_us": self.enqueue.cpu_us_each,
            "drain_cpu_us": self.drain.cpu_us_each,
        }


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


def measure_enqueue(sides: list[Side], count: int, chunk: int) -> dict[str, Rate]:
    """Send ``count`` no-op tasks per side, the sides taking turns in chunks."""
    rates = {side.name: Rate(0, 0.0, 0.0) for side in sides}
    turn = 0
    while any(rate.count < count for rate in rates.values()):
        for side in sides if turn % 2 == 0 else sides[::-1]:
            rate = rates[side.name]
            todo = min(chunk, count - rate.count)
            send = side.send_noop
            cpu, started = time.thread_time(), time.perf_counter()
            for _ in range(todo):
                send()
            rate.seconds += time.perf_counter() - started
            rate.cpu_seconds += time.thread_time() - cpu
            rate.count += todo
        turn += 1
    return rates


@contextmanager
def worker_process(side: Side, workdir: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run the side's worker, its output to ``log_path``; stop it (SIGTERM, then SIGKILL) after."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            side.worker_argv,
            cwd=workdir,
            env=side.worker_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def check_alive(process: subprocess.Popen[bytes], log_path: Path) -> None:
    if process.poll() is not None:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise BenchmarkError(f"worker exited with code {process.returncode}:\n" + "\n".join(tail))


def measure_drain(
    side: Side, client: redis.Redis, count: int, process: subprocess.Popen[bytes], log_path: Path
) -> tuple[Rate, float]:
    """Wait for the just-started worker to empty the queue.

    Returns:
      tuple: the rate from the first acknowledgement seen to the last (CPU: the worker's
      processes over the same span), and the seconds from the worker's start to that first
      acknowledgement.
    """
    spawned = time.perf_counter()
    deadline = time.monotonic() + 120 + count / 100
    first_at: float | None = None
    left_at_first = count
    cpu_at_first = 0.0
    while time.monotonic() < deadline:
        left = int(client.hlen(side.messages_key))
        now = time.perf_counter()
        if first_at is None and left < count:
            first_at, left_at_first, cpu_at_first = now, left, process_tree_cpu(process.pid)
        if left == 0 and first_at is not None:
            cpu = process_tree_cpu(process.pid) - cpu_at_first
            if client.zcard(side.dead_letter_key):
                raise BenchmarkError(f"{side.name}: messages were dead-lettered; see {log_path}")
            return Rate(left_at_first, now - first_at, cpu), first_at - spawned
        check_alive(process, log_path)
        time.sleep(POLL_INTERVAL)
    raise BenchmarkError(f"{side.name}: the queue was not drained in time; see {log_path}")


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants; NaN without /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        times[child] = (int(fields[11]) + int(fields[12])) / tick
    if pid not in times:
        return math.nan
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent and child not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times[p] for p in tree)


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
    return wait_for_results(client, LATENCY_KEY, count, timeout=60)


def measure_idle_latency(side: Side, client: redis.Redis, samples: int, gap: float) -> list[float]:
    """Send one latency task after each ``gap`` seconds of silence; return the latencies in ms."""
    for i in range(samples):
        time.sleep(gap)
        side.send_latency(time.time(), IDLE_LATENCY_KEY)
        wait_for_results(client, IDLE_LATENCY_KEY, i + 1, timeout=30)
    return wait_for_results(client, IDLE_LATENCY_KEY, samples, timeout=30)


def run_round(
    sides: list[Side], client: redis.Redis, args: argparse.Namespace, workdir: Path, round_no: int
) -> dict[str, Run]:
    """Enqueue for both sides, then for each in turn: start its worker, drain, latency, stop."""
    reset_redis(client)
    rates = measure_enqueue(sides, args.tasks, args.enqueue_chunk)
    results = {}
    for side in sides:
        log_path = workdir / f"worker-{side.name}-{round_no}.log"
        with worker_process(side, workdir, log_path) as process:
            drain, worker_start = measure_drain(side, client, args.tasks, process, log_path)
            latencies = measure_latency(side, client, args.latency_tasks, args.latency_interval / 1000)
            idle = measure_idle_latency(side, client, args.idle_samples, args.idle_gap)
            check_alive(process, log_path)
        client.delete(LATENCY_KEY, IDLE_LATENCY_KEY)
        run = results[side.name] = Run(side.name, rates[side.name], drain, worker_start, latencies, idle)
        m = run.metrics()
        print(
            f"round {round_no} {side.name:<4}  enqueue {m['enqueue_rate']:7,.0f}/s  "
            f"drain {m['drain_rate']:7,.0f}/s  latency p50 {m['latency_p50_ms']:5.1f} ms  "
            f"p99 {m['latency_p99_ms']:6.1f} ms  idle {m['idle_latency_ms']:6.1f} ms  "
            f"start {m['worker_start_s']:4.2f} s  CPU/task: send {m['enqueue_cpu_us']:4.0f} us, "
            f"worker {m['drain_cpu_us']:4.0f} us",
            flush=True,
        )
    return results


def warm_up(sides: list[Side], client: redis.Redis) -> None:
    """Exercise each producer path once, so the first round does not pay for first calls."""
    for side in sides:
        for _ in range(WARMUP_SENDS):
            side.send_noop()
    reset_redis(client)


# Reporting


def summarize(rounds: list[dict[str, Run]]) -> dict[str, dict[str, Any]]:
    """Per metric: each side's median, and the median of the per-round aury/raw ratios."""
    summary: dict[str, dict[str, Any]] = {}
    for key, _, higher_is_better, target in ROWS:
        raw = [r["raw"].metrics()[key] for r in rounds]
        aury = [r["aury"].metrics()[key] for r in rounds]
        if any(math.isnan(v) for v in raw + aury):
            continue
        ratios = [a / b if b else math.nan for a, b in zip(aury, raw, strict=True)]
        entry: dict[str, Any] = {
            "raw": statistics.median(raw),
            "aury": statistics.median(aury),
            "ratio": statistics.median(ratios),
            "round_ratios": ratios,
            "higher_is_better": higher_is_better,
        }
        if key == "idle_latency_ms":
            # A few samples a round, each mostly Dramatiq's jittered idle back-off: pool them.
            raw_all = [v for r in rounds for v in r["raw"].idle_samples]
            aury_all = [v for r in rounds for v in r["aury"].idle_samples]
            entry.update(raw=statistics.median(raw_all), aury=statistics.median(aury_all))
            entry["ratio"] = entry["aury"] / entry["raw"]
        if target is not None:
            entry["target"] = target
            entry["meets_target"] = entry["ratio"] >= target
        summary[key] = entry
    return summary


def format_table(summary: dict[str, dict[str, Any]], idle_gap: float) -> str:
    headers = ["metric", "raw dramatiq", "aury_tasks", "ratio aury/raw", "per round", "target"]
    rows = []
    for key, label, higher_is_better, _ in ROWS:
        if key not in summary:
            continue
        entry = summary[key]
        if "target" in entry:
            note = f">= {entry['target']:.2f}x " + ("met" if entry["meets_target"] else "MISSED")
        else:
            note = "(higher is better)" if higher_is_better else "(lower is better)"
        digits = ",.0f" if key.endswith(("_rate", "_us")) else ".2f" if key.endswith("_s") else ".1f"
        rows.append([
            label.format(gap=idle_gap),
            format(entry["raw"], digits),
            format(entry["aury"], digits),
            f"{entry['ratio']:.3f}x",
            " ".join(f"{r:.2f}" for r in entry["round_ratios"]),
            note,
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        aligned = [
            c.rjust(w) if i in (1, 2, 3) else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(aligned).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def reproduce_command(args: argparse.Namespace) -> str:
    options = ["rounds", "tasks", "latency_tasks", "latency_interval", "idle_samples", "idle_gap",
               "enqueue_chunk", "threads", "processes"]  # fmt: skip
    return "python benchmarks/run.py " + " ".join(
        f"--{name.replace('_', '-')} {getattr(args, name):g}" for name in options
    )


def report(args: argparse.Namespace, info: dict[str, Any], rounds: list[dict[str, Run]]) -> None:
    summary = summarize(rounds)
    print()
    print(
        f"{args.tasks:,} no-op tasks; {args.latency_tasks} latency tasks, one every "
        f"{args.latency_interval:g} ms; worker {args.processes} process(es) x {args.threads} thread(s); "
        f"median of {args.rounds} round(s)"
    )
    print(format_table(summary, args.idle_gap))
    print()
    print(
        f"machine: {info['cpus']} CPU(s) {info['cpu']}, load at start {info['load_average']}; "
        f"{info['platform']}; Python {info['python']}; dramatiq {info['dramatiq']}; "
        f"aury-tasks {info['aury_tasks']}; redis-py {info['redis_py']}; {info['server']}"
    )
    print(f"reproduce: {reproduce_command(args)}")
    if args.json:
        runs = [{name: {**run.metrics(), "latency_samples_ms": run.latency_samples,
                        "idle_samples_ms": run.idle_samples} for name, run in r.items()}
                for r in rounds]  # fmt: skip
        save_json(args, machine=info, summary=summary, rounds=runs)


# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Raw Dramatiq vs aury-tasks: enqueue rate, drain rate and latency on one private Redis.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--rounds", type=int, default=3, help="rounds, each running both sides; figures are medians")
    add("--tasks", type=int, default=20_000, help="tasks enqueued and drained per side and round")
    add("--latency-tasks", type=int, default=500, help="tasks sent for the latency figures")
    add("--latency-interval", type=float, default=20.0, help="milliseconds between latency tasks")
    add("--idle-samples", type=int, default=3, help="tasks sent each after an idle gap (0: none)")
    add("--idle-gap", type=float, default=3.0, help="seconds of silence before each idle sample")
    add("--enqueue-chunk", type=int, default=200, help="sends per turn while the sides take turns")
    add("--threads", type=int, default=8, help="worker threads per process, both sides")
    add("--processes", type=int, default=1, help="worker processes, both sides")
    add("--json", type=Path, default=None, metavar="PATH", help="also save the results here")
    add("--keep-workdir", action="store_true", help="keep the temporary directory (worker and server logs)")
    args = parser.parse_args(argv)
    for name in ("rounds", "tasks", "latency_tasks", "enqueue_chunk", "threads", "processes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    if args.idle_samples < 0 or args.latency_interval < 0 or args.idle_gap < 0:
        parser.error("--idle-samples, --latency-interval and --idle-gap must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Settings from the environment would make the two sides differ: drop them here and for
    # the workers (the harness-side aury settings also ignore any .env file).
    for key in [k for k in os.environ if k.startswith(("TASK_", "AURY_TASKS_", "dramatiq_"))]:
        del os.environ[key]
    env = dict(os.environ)
    workdir = Path(tempfile.mkdtemp(prefix="aury-bench-"))
    server = start_server(workdir / "redis", port=free_port())
    client = redis.Redis.from_url(server.url)
    sides: list[Side] = []
    try:
        modules_dir = write_worker_modules(workdir)
        sides.append(make_raw_side(server.url, workdir, args, env))
        sides.append(make_aury_side(server.url, workdir, modules_dir, args, env))
        info = machine_info(server, dramatiq=dramatiq.__version__)
        print(f"# {server.version} at {server.url}; workdir {workdir}", flush=True)
        warm_up(sides, client)
        rounds = []
        for round_no in range(1, args.rounds + 1):
            order = sides if round_no % 2 else sides[::-1]
            rounds.append(run_round(order, client, args, workdir, round_no))
        report(args, info, rounds)
        return 0
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        args.keep_workdir = True
        return 2
    finally:
        for side in sides:
            side.close()
        client.close()
        server.stop()
        if args.keep_workdir:
            print(f"workdir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
