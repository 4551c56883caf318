"""The cost of ``TASK_BROKER_MIN_REPLICAS``: send rate and latency with 0 and with 1 replica to wait for.

The script starts a master (the embedded Valkey on a free loopback port, AOF on, as ``run.py``
starts it) and one replica of it (the same binary with ``--replicaof``, no persistence), both in a
temporary directory. Two TaskManagers in producer mode send to the master, the ledger on as by
default: one with ``TASK_BROKER_MIN_REPLICAS=0``, one with ``1`` (each send then ends with a
``WAIT 1`` on its connection). No worker runs: only sends are measured. The two take turns, chunk
by chunk (0 1 1 0 …), so load from elsewhere on the machine hits both alike.

* single sends: ``--tasks`` ``Task.send()`` each, one thread, in chunks of ``--chunk``; rate =
  sends / time spent in that setting's chunks; latency = each send's own time (p50/p95/p99,
  nearest rank);
* bulk sends: ``--bulk-tasks`` each through ``Task.send_many``, ``--bulk-chunk`` tasks a call
  (one ``WAIT`` a call with 1); rate = tasks / time in those calls.

Run it from the repository with the project's venv::

    python benchmarks/replicas.py                          # 10,000 sends + 50,000 bulk each: ~40 s
    python benchmarks/replicas.py --tasks 2000 --bulk-tasks 10000 --json /tmp/replicas.json

It asserts nothing about timings; it exits 0 unless a send failed (2).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from common import free_port, machine_info, percentile, save_json

from aury_tasks import TaskManager, TaskSettings
from aury_tasks.broker.embedded import EmbeddedServer, find_server_binary, start_server
from aury_tasks.tasks.task import Task

#: The queue every send goes to (no worker reads it).
QUEUE = "bench"
#: The settings compared, in the order of the table's columns.
SETTINGS = (0, 1)


@dataclass
class Side:
    """One setting of TASK_BROKER_MIN_REPLICAS: its manager's task and what its sends took."""

    min_replicas: int
    task: Task[Any, Any]
    single_seconds: float = 0.0
    single_sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    bulk_seconds: float = 0.0
    bulk_sent: int = 0

    def single(self, count: int) -> None:
        send, clock, latencies = self.task.send, time.perf_counter, self.latencies_ms
        for number in range(count):
            began = clock()
            send(number)
            latencies.append((clock() - began) * 1000)
        self.single_seconds += sum(latencies[-count:]) / 1000
        self.single_sent += count

    def bulk(self, count: int) -> None:
        calls = [(number,) for number in range(count)]
        began = time.perf_counter()
        self.task.send_many(calls)
        self.bulk_seconds += time.perf_counter() - began
        self.bulk_sent += count

    def figures(self) -> dict[str, float]:
        return {
            "single_rate": self.single_sent / self.single_seconds,
            "bulk_rate": self.bulk_sent / self.bulk_seconds,
            "p50_ms": percentile(self.latencies_ms, 50),
            "p95_ms": percentile(self.latencies_ms, 95),
            "p99_ms": percentile(self.latencies_ms, 99),
        }


def start_replica(server: EmbeddedServer, directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A replica of ``server`` on a free port, once it is in sync."""
    port = free_port()
    master_port = server.url.rsplit(":", 1)[1].split("/")[0]
    directory.mkdir(parents=True)
    command = [find_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
               "--save", "", "--appendonly", "no", "--replicaof", "127.0.0.1", master_port,
               "--logfile", str(directory / "server.log")]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    client = redis.Redis(port=port, decode_responses=True, socket_timeout=2)
    deadline = time.monotonic() + 20
    while True:
        try:
            if client.info("replication").get("master_link_status") == "up":
                return process, port
        except redis.RedisError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the replica did not get in sync (see {directory / 'server.log'})")
        time.sleep(0.05)


def make_side(url: str, workdir: Path, min_replicas: int) -> Side:
    """A TaskManager of its own (named after the setting) in producer mode, with the task registered."""
    settings = TaskSettings.load(_env_file=None, broker_url=url, data_dir=str(workdir / ".aum"),
                                 broker_min_replicas=min_replicas)  # fmt: skip
    tm = TaskManager.get_instance(f"replicas-{min_replicas}")
    tm.configure(settings=settings, run_mode="producer")

    @tm.conditional_task(queue_name=QUEUE, actor_name=f"bench_replicas.noop{min_replicas}")
    def noop(number: int) -> None:
        pass

    return Side(min_replicas, noop)


def in_turns(sides: list[Side], total: int, chunk: int, step: Any) -> None:
    """Call ``step(side, n)`` until each side did ``total``, ``chunk`` at a time, in the order 0 1 1 0 …"""
    done, turn = 0, 0
    while done < total:
        size = min(chunk, total - done)
        for side in sides if turn % 2 == 0 else reversed(sides):
            step(side, size)
        done, turn = done + size, turn + 1


def table(sides: list[Side]) -> str:
    """The figures side by side, aligned, with the ratio of 1 to 0."""
    first, second = (side.figures() for side in sides)
    rows = [
        ("single sends (tasks/s)", "single_rate", "{:,.0f}"),
        ("send_many (tasks/s)", "bulk_rate", "{:,.0f}"),
        ("send latency p50 (ms)", "p50_ms", "{:.3f}"),
        ("send latency p95 (ms)", "p95_ms", "{:.3f}"),
        ("send latency p99 (ms)", "p99_ms", "{:.3f}"),
    ]
    cells = [["metric", *(f"min_replicas {side.min_replicas}" for side in sides), "1 / 0"]]
    for title, key, form in rows:
        ratio = f"{second[key] / first[key]:.2f}x"
        cells.append([title, form.format(first[key]), form.format(second[key]), ratio])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for number, row in enumerate(cells):
        numbers = (text.rjust(width) for text, width in zip(row[1:], widths[1:], strict=True))
        lines.append("  ".join([row[0].ljust(widths[0]), *numbers]))
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Send rate and latency with TASK_BROKER_MIN_REPLICAS 0 and 1, on a master and a replica.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--tasks", type=int, default=10_000, help="single sends per setting")
    add("--chunk", type=int, default=500, help="single sends a turn")
    add("--bulk-tasks", type=int, default=50_000, help="tasks sent with send_many per setting")
    add("--bulk-chunk", type=int, default=1_000, help="tasks a send_many call (and a turn)")
    add("--json", type=Path, default=None, help="also save the figures as JSON")
    add("--keep-workdir", action="store_true", help="keep the servers' directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for key in [k for k in os.environ if k.startswith("TASK_")]:
        del os.environ[key]
    workdir = Path(tempfile.mkdtemp(prefix="aury-replicas-bench-"))
    began = time.perf_counter()
    server = start_server(workdir / "master", port=free_port())
    replica: subprocess.Popen[bytes] | None = None
    try:
        replica, replica_port = start_replica(server, workdir / "replica")
        info = machine_info(server)
        print(f"# {server.version}: master {server.url}, replica 127.0.0.1:{replica_port}; workdir {workdir}",
              flush=True)  # fmt: skip
        sides = [make_side(server.url, workdir, setting) for setting in SETTINGS]
        for side in sides:  # warm up: connections, scripts loaded, the replica counted by WAIT
            side.single(50)
            side.bulk(100)
            side.single_seconds = side.bulk_seconds = 0.0
            side.single_sent = side.bulk_sent = 0
            side.latencies_ms.clear()
        in_turns(sides, args.tasks, args.chunk, Side.single)
        in_turns(sides, args.bulk_tasks, args.bulk_chunk, Side.bulk)
        print()
        print(table(sides))
        print()
        print(f"machine: {info['cpus']} CPU(s) {info['cpu']}, load at start {info['load_average']}; "
              f"Python {info['python']}; redis-py {info['redis_py']}; {info['server']}; master AOF everysec, "
              f"replica on the same host; run took {time.perf_counter() - began:.0f} s")  # fmt: skip
        print(f"reproduce: python benchmarks/replicas.py --tasks {args.tasks} --chunk {args.chunk} "
              f"--bulk-tasks {args.bulk_tasks} --bulk-chunk {args.bulk_chunk}")  # fmt: skip
        if args.json:
            save_json(
                args, machine=info, figures={f"min_replicas_{s.min_replicas}": s.figures() for s in sides}
            )
        return 0
    except Exception as exc:  # a send that failed (a ReplicationTimeout: the replica fell behind)
        print(f"benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        args.keep_workdir = True
        return 2
    finally:
        TaskManager.reset_instance()
        if replica is not None:
            replica.terminate()
            replica.wait(10)
        server.stop()
        if args.keep_workdir:
            print(f"workdir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
