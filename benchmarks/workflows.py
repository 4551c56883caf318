"""Workflows: what a group and a chord cost over the same tasks sent one by one.

Three variants of ``--tasks`` no-op tasks (``noop(i)`` returns ``i``), side by side on one private
Redis, each on a flushed server with no worker running while it is sent:

* individual: ``noop.send(i)`` for each ``i``;
* chord: ``chord([noop.s(i) for i in range(n)], total.s()).send()``, the callback getting the
  list of the n results;
* group: ``group([noop.s(i) for i in range(n)]).send()``.

Then a worker (``aum worker``) is started on the waiting messages and timed as ``run.py`` times
it: from the first acknowledgement seen to the queue's hash of unacknowledged messages being
empty. For the chord that is when the callback has been acknowledged (the last member enqueues it
before its own ack, and the workflow record ends before the callback's ack); the results are
checked afterwards with ``get_result``. End to end is send + drain: the worker's start-up, the
same for all three, is left out. The round trips of each send are counted in this process (one
write to a Redis connection, a single command or a whole pipeline, is one) and the server's
``INFO commandstats`` gives the commands behind them.

Variants take turns (individual, chord, group in odd rounds, the reverse in even ones); figures
are medians over ``--rounds`` and a ratio is the median of the per-round ratios::

    python benchmarks/workflows.py                      # 3 rounds of 10,000 tasks
    python benchmarks/workflows.py --tasks 2000 --rounds 1 --json /tmp/workflows.json
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from common import free_port, machine_info, process_tree_cpu, save_json
from contenders import QUEUE, Side, dramatiq_side
from redis.connection import AbstractConnection
from run import BenchmarkError, Rate, measure_drain, reset_redis, worker_process

from aury_tasks import TaskManager, TaskSettings, chord, group
from aury_tasks.broker.embedded import EmbeddedServer, start_server
from aury_tasks.core import keys

VARIANTS = ("individual", "chord", "group")
NOOP_ACTOR = "bench.wf_noop"
TOTAL_ACTOR = "bench.wf_total"
#: Tasks sent (individually and as a small chord), then flushed, before the first round.
WARMUP_TASKS = 300
#: Commands the harness itself sends while the worker drains (polling, statistics).
HARNESS_COMMANDS = {"hlen", "zcard", "info", "config|set", "flushall", "bgrewriteaof"}
#: The end-to-end overhead allowed over individual sends (the workflows issue's target).
TARGET_RATIO = 1.15

WORKER_MODULE = f'''"""Tasks of the workflow benchmark, found by ``aum worker --modules``."""
from aury_tasks import TaskManager

tm = TaskManager.get_instance()


@tm.conditional_task(queue_name="{QUEUE}", actor_name="{NOOP_ACTOR}")
def noop(i):
    return i


@tm.conditional_task(queue_name="{QUEUE}", actor_name="{TOTAL_ACTOR}")
def total(results):
    return [len(results), sum(results)]
'''

#: The table's rows: (metric, label). Drain time is for all ``--tasks``, at the measured drain rate.
ROWS: list[tuple[str, str]] = [
    ("send_rate", "send rate (msg/s)"),
    ("drain_rate", "drain rate (tasks/s)"),
    ("send_s", "send time (s)"),
    ("drain_s", "drain time (s)"),
    ("end_to_end_s", "end to end: send + drain (s)"),
    ("send_cpu_us", "producer CPU per message sent (µs)"),
    ("worker_cpu_us", "worker CPU per task (µs)"),
    ("redis_cpu_us", "Redis CPU per task, send + drain (µs)"),
    ("send_round_trips", "round trips to send"),
    ("send_commands", "Redis commands to send"),
    ("drain_commands_each", "Redis commands per task while draining"),
]


@dataclass
class Run:
    """What one variant measured in one round."""

    variant: str
    send: Rate
    drain: Rate
    worker_start_s: float
    round_trips: int
    redis_cpu_s: float
    #: For a chord: its last member's end to its callback's end (seconds, from the ledger).
    callback_tail_s: float
    #: ``INFO commandstats`` calls during the send and during the drain, by command.
    send_commands: dict[str, int]
    drain_commands: dict[str, int]

    def metrics(self) -> dict[str, float]:
        drained = self.drain.count or 1
        return {
            "send_rate": self.send.per_second,
            "drain_rate": self.drain.per_second,
            "send_s": self.send.seconds,
            "drain_s": self.drain.seconds * self.send.count / drained,
            "end_to_end_s": self.send.seconds + self.drain.seconds * self.send.count / drained,
            "send_cpu_us": self.send.cpu_us_each,
            "worker_cpu_us": self.drain.cpu_us_each,
            "redis_cpu_us": self.redis_cpu_s / self.send.count * 1e6,
            "send_round_trips": self.round_trips,
            "send_commands": sum(self.send_commands.values()),
            "drain_commands_each": sum(self.drain_commands.values()) / self.send.count,
            "worker_start_s": self.worker_start_s,
            **({"callback_tail_ms": self.callback_tail_s * 1000} if self.variant == "chord" else {}),
        }


# Measuring


@contextmanager
def counting_round_trips() -> Iterator[list[int]]:
    """Count this process's writes to Redis connections: a command or a whole pipeline is one."""
    counter = [0]
    original = AbstractConnection.send_packed_command

    def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        counter[0] += 1
        original(self, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def command_calls(client: redis.Redis) -> dict[str, int]:
    """``INFO commandstats`` as calls by command name."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


def calls_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Calls made between two ``command_calls`` readings, the harness's own left out."""
    delta = {name: calls - before.get(name, 0) for name, calls in after.items()}
    return {name: n for name, n in sorted(delta.items(), key=lambda kv: -kv[1])
            if n > 0 and name not in HARNESS_COMMANDS}  # fmt: skip


class Producer:
    """The producer side: a producer-mode ``TaskManager`` with the worker's two tasks declared."""

    def __init__(self, url: str, data_dir: str) -> None:
        settings = TaskSettings.load(_env_file=None, broker_url=url, data_dir=data_dir)
        self.manager = TaskManager("benchmark-workflows", settings=settings)
        self.manager.initialize(run_mode="producer")

        @self.manager.conditional_task(queue_name=QUEUE, actor_name=NOOP_ACTOR)
        def noop(i: int) -> int:
            return i

        @self.manager.conditional_task(queue_name=QUEUE, actor_name=TOTAL_ACTOR)
        def total(results: list[int]) -> list[int]:
            return [len(results), sum(results)]

        self.noop, self.total = noop, total

    def send(self, variant: str, count: int) -> Any:
        """Send ``count`` no-op tasks as ``variant``; returns the last task's or the workflow's handle."""
        if variant == "individual":
            send = self.noop.send
            for i in range(count):
                handle = send(i)
            return handle
        if variant == "chord":
            return chord([self.noop.s(i) for i in range(count)], self.total.s()).send()
        return group([self.noop.s(i) for i in range(count)]).send()


def check_outcome(variant: str, handle: Any, count: int) -> float:
    """Raise unless the last task (individual) or the workflow ended with the expected result.

    Returns:
      float: for a chord, the seconds from its last member's end to its callback's end (else NaN).
    """
    expected: Any = {"individual": count - 1, "chord": [count, count * (count - 1) // 2]}
    result = handle.get_result(timeout=30)
    if result != expected.get(variant, list(range(count))):
        raise BenchmarkError(f"{variant}: the result is {repr(result)[:120]}, not the one expected")
    if variant != "chord":
        return math.nan
    pipe = handle.manager.store.client.pipeline(transaction=False)
    for task_id in handle.task_ids():
        pipe.hget(keys.DEFAULT.task_record(task_id), "finished_at")
    *members, callback = [float(value) for value in pipe.execute()]
    return callback - max(members)


def run_variant(variant: str, producer: Producer, side: Side, server: EmbeddedServer, client: redis.Redis,
                args: argparse.Namespace, workdir: Path, round_no: int) -> Run:  # fmt: skip
    """Send the variant with no worker running, then start a worker and time it draining."""
    reset_redis(client)
    calls_before, redis_cpu = command_calls(client), process_tree_cpu(server.pid)
    with counting_round_trips() as trips:
        cpu, started = time.thread_time(), time.perf_counter()
        handle = producer.send(variant, args.tasks)
        send = Rate(args.tasks, time.perf_counter() - started, time.thread_time() - cpu)
    calls_sent = command_calls(client)
    log_path = workdir / f"worker-{variant}-{round_no}.log"
    side = dataclasses.replace(side, name=variant)
    with worker_process(side, workdir, log_path) as process:
        drain, worker_start = measure_drain(side, client, args.tasks, process, log_path)
    redis_cpu = process_tree_cpu(server.pid) - redis_cpu
    calls_drained = command_calls(client)
    tail = check_outcome(variant, handle, args.tasks)
    run = Run(variant, send, drain, worker_start, trips[0], redis_cpu, tail,
              calls_between(calls_before, calls_sent), calls_between(calls_sent, calls_drained))  # fmt: skip
    m = run.metrics()
    print(
        f"round {round_no} {variant:<10}  send {m['send_rate']:7,.0f}/s in {m['send_round_trips']:6,.0f} "
        f"round trips  drain {m['drain_rate']:6,.0f}/s  end to end {m['end_to_end_s']:5.2f} s  "
        f"CPU/task: send {m['send_cpu_us']:4.0f} us, worker {m['worker_cpu_us']:4.0f} us, "
        f"Redis {m['redis_cpu_us']:4.0f} us",
        flush=True,
    )
    return run


def warm_up(producer: Producer, client: redis.Redis) -> None:
    """Exercise both send paths once, so the first round does not pay for first calls."""
    producer.send("individual", WARMUP_TASKS)
    producer.send("chord", WARMUP_TASKS)
    reset_redis(client)


# Reporting


def summarize(rounds: list[dict[str, Run]]) -> dict[str, dict[str, Any]]:
    """Per metric: each variant's median, and chord's and group's median per-round ratio to individual."""
    tails = [r["chord"].metrics()["callback_tail_ms"] for r in rounds]
    summary: dict[str, dict[str, Any]] = {"callback_tail_ms": {"chord": statistics.median(tails)}}
    for key, _ in [*ROWS, ("worker_start_s", "")]:
        values = {v: [r[v].metrics()[key] for r in rounds] for v in VARIANTS}
        entry: dict[str, Any] = {v: statistics.median(values[v]) for v in VARIANTS}
        for v in VARIANTS[1:]:
            ratios = [a / b if b else math.nan for a, b in zip(values[v], values["individual"], strict=True)]
            entry[f"{v}_ratio"], entry[f"{v}_round_ratios"] = statistics.median(ratios), ratios
        summary[key] = entry
    return summary


def format_table(summary: dict[str, dict[str, Any]]) -> str:
    headers = ["metric", *VARIANTS, "chord/ind.", "per round", "group/ind.", "per round"]
    rows = []
    for key, label in ROWS:
        entry = summary[key]
        digits = ".2f" if key.endswith("_s") else ".1f" if key.endswith("_each") else ",.0f"
        cells = [label, *(format(entry[v], digits) for v in VARIANTS)]
        for v in VARIANTS[1:]:
            cells += [f"{entry[f'{v}_ratio']:.3f}x", " ".join(f"{r:.2f}" for r in entry[f"{v}_round_ratios"])]
        rows.append(cells)
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in (1, 2, 3, 4, 6) else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()  # fmt: skip

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def overhead_lines(summary: dict[str, dict[str, Any]]) -> list[str]:
    """The verdict: chord's and group's extra time over individual sends, end to end and draining."""
    lines = []
    for v in VARIANTS[1:]:
        e2e, drain = summary["end_to_end_s"][f"{v}_ratio"], summary["drain_s"][f"{v}_ratio"]
        verdict = "met" if e2e < TARGET_RATIO else "MISSED"
        lines.append(
            f"{v} overhead over individual sends: end to end {e2e - 1:+.1%}, draining {drain - 1:+.1%} "
            f"(target end to end < {TARGET_RATIO - 1:.0%}: {verdict})"
        )
    return lines


def send_commands_lines(rounds: list[dict[str, Run]], top: int = 6) -> list[str]:
    """What each send cost Redis in the first round: round trips and the commands behind them."""
    lines = []
    for v in VARIANTS:
        run = rounds[0][v]
        shown = ", ".join(f"{name} {calls:,}" for name, calls in list(run.send_commands.items())[:top])
        lines.append(f"  {v:<10} {run.round_trips:7,} round trips, {sum(run.send_commands.values()):7,} "
                     f"commands: {shown}")  # fmt: skip
    return lines


def reproduce_command(args: argparse.Namespace) -> str:
    options = ["rounds", "tasks", "threads", "processes"]
    return "python benchmarks/workflows.py " + " ".join(f"--{name} {getattr(args, name)}" for name in options)


def report(args: argparse.Namespace, info: dict[str, Any], rounds: list[dict[str, Run]]) -> None:
    summary = summarize(rounds)
    print()
    print(f"{args.tasks:,} no-op tasks per variant; worker {args.processes} process(es) x {args.threads} "
          f"thread(s); median of {args.rounds} round(s)")  # fmt: skip
    print(format_table(summary))
    print()
    print("\n".join(overhead_lines(summary)))
    print(f"Redis commands of each send of {args.tasks:,} tasks (round 1):")
    print("\n".join(send_commands_lines(rounds)))
    start, tail = summary["worker_start_s"]["individual"], summary["callback_tail_ms"]["chord"]
    print(f"chord: last member done -> callback done, median {tail:.0f} ms (in its drain time)")
    print(f"worker start to first ack (not in the figures): median {start:.2f} s")
    print()
    print(f"machine: {info['cpus']} CPU(s) {info['cpu']}, load at start {info['load_average']}; "
          f"{info['platform']}; Python {info['python']}; aury-tasks {info['aury_tasks']}; "
          f"redis-py {info['redis_py']}; {info['server']}")  # fmt: skip
    print(f"reproduce: {reproduce_command(args)}")
    if args.json:
        runs = [
            {v: {**run.metrics(), "send_commands": run.send_commands, "drain_commands": run.drain_commands}
             for v, run in r.items()}
            for r in rounds
        ]  # fmt: skip
        save_json(args, machine=info, summary=summary, rounds=runs)


# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Chord and group overhead over the same no-op tasks sent one by one (private Redis).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--rounds", type=int, default=3, help="rounds, each running the three variants; figures are medians")
    add("--tasks", type=int, default=10_000, help="no-op tasks per variant and round (group members)")
    add("--threads", type=int, default=8, help="worker threads per process")
    add("--processes", type=int, default=1, help="worker processes")
    add("--json", type=Path, default=None, metavar="PATH", help="also save the results here")
    add("--keep-workdir", action="store_true", help="keep the temporary directory (worker and server logs)")
    args = parser.parse_args(argv)
    for name in ("rounds", "tasks", "threads", "processes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for key in [k for k in os.environ if k.startswith(("TASK_", "AURY_TASKS_", "dramatiq_"))]:
        del os.environ[key]  # the harness and its workers run with the defaults
    workdir = Path(tempfile.mkdtemp(prefix="aury-bench-wf-"))
    server = start_server(workdir / "redis", port=free_port())
    client = redis.Redis.from_url(server.url)
    producer: Producer | None = None
    try:
        modules_dir = workdir / "bench_modules"
        (modules_dir / "wfbench").mkdir(parents=True)
        (modules_dir / "wfbench" / "tasks.py").write_text(WORKER_MODULE)
        data_dir = str(workdir / ".aum")
        producer = Producer(server.url, data_dir)
        argv_ = [
            sys.executable, "-m", "aury_tasks.cli", "worker", "--modules", str(modules_dir),
            "--processes", str(args.processes), "--concurrency", str(args.threads), "--queues", QUEUE,
        ]  # fmt: skip
        env = {**os.environ, "TASK_BROKER_URL": server.url, "TASK_DATA_DIR": data_dir}
        side = dramatiq_side("aury", server.url, keys.DEFAULT.prefix, send_noop=producer.noop.send,
                             send_latency=lambda *_: None, worker_argv=argv_, worker_env=env,
                             close=producer.manager.close)  # fmt: skip
        info = machine_info(server)
        print(f"# {server.version} at {server.url}; workdir {workdir}", flush=True)
        warm_up(producer, client)
        rounds = []
        for round_no in range(1, args.rounds + 1):
            order = VARIANTS if round_no % 2 else VARIANTS[::-1]
            rounds.append({v: run_variant(v, producer, side, server, client, args, workdir, round_no)
                           for v in order})  # fmt: skip
        report(args, info, rounds)
        return 0
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        args.keep_workdir = True
        return 2
    finally:
        if producer is not None:
            producer.manager.close()
        client.close()
        server.stop()
        if args.keep_workdir:
            print(f"workdir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
