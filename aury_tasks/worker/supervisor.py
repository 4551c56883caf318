"""The supervisor of ``aum worker``: Dramatiq's, in a process that has loaded nothing else.

``aum worker`` reads the settings, imports the task modules, reaches the broker and says what it
found; then it replaces itself (``exec``) with this module, which runs Dramatiq's supervisor with
the arguments it was given. The worker processes that supervisor starts import the task modules
again (:func:`aury_tasks.worker.process.boot_worker_process`). So the supervisor, which only watches
its children and forwards signals, weighs what Dramatiq's does instead of holding everything
the checks loaded (about 25 MiB less per host).

The same process id stays, so systemd, a PID file or a terminal's Ctrl-C see no difference.
An embedded server started by ``aum worker`` is this process's child still: it is stopped (and
waited for) when the supervisor exits, as ``aum worker`` would have; were the supervisor
killed, the kernel tells the server (see :mod:`aury_tasks.broker.embedded`).

With ``--max-tasks-per-child`` or ``--max-memory-per-child``, a worker process that exits to be
replaced is started again instead of stopping everything (:mod:`aury_tasks.worker.recycling`).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from typing import Any

from dramatiq import cli

#: Seconds an embedded server is given to write its AOF and exit before it is killed.
SERVER_STOP_TIMEOUT = 10.0


def main(arguments: str) -> int:
    """Run Dramatiq's supervisor as ``arguments`` say (JSON: its namespace, and the embedded server)."""
    given: dict[str, Any] = json.loads(arguments)
    server = given.pop("embedded_server", None)
    if server is not None:
        atexit.register(_stop_server, int(server["pid"]), str(server["state_file"]))
    metrics_dir = given.pop("metrics_dir", None)
    if metrics_dir is not None:  # prometheus_client's multiprocess files (aury_tasks.worker.metrics)
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    recycling = given.pop("recycling", None)
    if recycling is not None:  # --max-tasks-per-child, --max-memory-per-child
        from .recycling import Limits, install

        install(Limits(**recycling))
    return int(cli.main(argparse.Namespace(**given)))


def _stop_server(pid: int, state_file: str) -> None:
    """Stop the embedded server ``pid`` (a child of this process) and wait for it."""
    try:
        os.kill(pid, signal.SIGTERM)  # the server writes its AOF out and exits
    except ProcessLookupError:
        return
    deadline = time.monotonic() + SERVER_STOP_TIMEOUT
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.02)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_file)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
