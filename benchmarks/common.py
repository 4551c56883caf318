"""What the benchmark scripts share: a free port, a percentile and a description of the machine."""

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
from aury_tasks.embedded import EmbeddedServer


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
