"""What the benchmark scripts share: a free port, a percentile, a process tree's CPU and peak memory
(from ``/proc``) and a description of the machine."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
from pathlib import Path
from typing import Any

import redis

import aury_tasks
from aury_tasks.broker.embedded import EmbeddedServer


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def process_tree(pid: int) -> dict[int, list[str]]:
    """``pid`` and its descendants, each with the fields of its ``/proc/<pid>/stat`` after the name.

    Empty when ``pid`` is gone or there is no ``/proc``.
    """
    stats: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            stats[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError, ValueError):
            continue
    if pid not in stats:
        return {}
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [
            child for child, fields in stats.items() if int(fields[1]) == parent and child not in tree
        ]
        tree.update(children)
        frontier.extend(children)
    return {p: stats[p] for p in tree}


def process_tree_cpu(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants; NaN without /proc.

    With ``reaped``, also the CPU of descendants that have exited and were waited for (an RQ
    worker's forked work horses); left out otherwise, so that a Redis server's AOF rewrite does
    not count.
    """
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    fields = (11, 12, 13, 14) if reaped else (11, 12)
    tree = process_tree(pid)
    if not tree:
        return math.nan
    return sum(int(stat[i]) for stat in tree.values() for i in fields) / tick


def process_tree_peak_rss(pid: int) -> float:
    """The sum of the peak resident set sizes (``VmHWM``) of ``pid`` and its descendants, in MiB.

    NaN when ``pid`` is gone or there is no ``/proc``.
    """
    total_kib = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024 if total_kib else math.nan


def machine_info(server: EmbeddedServer, **extra: Any) -> dict[str, Any]:
    """CPU, load, platform and versions, for the report; ``extra`` adds the script's own."""
    cpu = platform.machine()
    try:
        models = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")]
        cpu = models[0].split(":", 1)[1].strip() if models else cpu
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "aury_tasks": aury_tasks.__version__,
        "redis_py": redis.__version__,
        "server": server.version,
        **extra,
    }


def save_json(args: argparse.Namespace, **sections: Any) -> None:
    """Write the run's configuration (``args``) and ``sections`` as JSON to ``args.json``."""
    config = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"config": config, **sections}, indent=2))
    print(f"saved: {args.json}")
