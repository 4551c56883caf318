"""The embedded server: shared by the processes of one directory, gone with its owner, and enough
for a whole worker-and-sender run with no setting at all."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

from .events import wait_until

FIXTURE_MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "sample_modules"

#: A process that gets the embedded server for the directory argv[1], prints what it got, then
#: holds on to it until its standard input is closed.
ENSURE_SERVER = """
import json, sys
from aury_tasks.broker.embedded import ensure_embedded_server
server = ensure_embedded_server(sys.argv[1])
print(json.dumps({"pid": server.pid, "url": server.url, "owned": server.owned}), flush=True)
sys.stdin.read()
"""


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TASK_")}


def _start_holder(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start a process holding the embedded server of ``data_dir``; return it and what it got."""
    process = subprocess.Popen(
        [sys.executable, "-c", ENSURE_SERVER, str(data_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_environment(),
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, f"the process exited with {process.wait()} before reporting a server"
    return process, json.loads(line)


def _ensure_once(data_dir: Path) -> dict[str, Any]:
    """Get the embedded server of ``data_dir`` from a short-lived process; return what it got."""
    done = subprocess.run(
        [sys.executable, "-c", ENSURE_SERVER, str(data_dir)],
        input="", capture_output=True, text=True, env=_environment(), timeout=30, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def test_a_second_process_reuses_the_server_until_its_owner_exits(tmp_path: Path) -> None:
    # Given a process that started the embedded server for a data directory
    data_dir = tmp_path / ".aum"
    owner, started = _start_holder(data_dir)
    try:
        assert started["owned"] is True

        # When another process asks for the server of the same directory
        reused = _ensure_once(data_dir)

        # Then it gets the same server, which it does not own
        assert reused == {**started, "owned": False}
        assert json.loads((data_dir / "embedded.json").read_text())["pid"] == started["pid"]
        # ... a server that keeps an AOF under the data directory
        assert (data_dir / "appendonlydir").is_dir()
        assert _answers(started["url"])
        # ... and that outlived the second process
        assert _running(started["pid"])
    finally:
        # When the owner exits
        assert owner.stdin is not None
        owner.stdin.close()
        exit_code = owner.wait(timeout=30)

    # Then the server has stopped with it
    assert exit_code == 0
    assert not _running(started["pid"])
    assert not (data_dir / "embedded.json").exists()


def test_the_server_stops_when_its_owner_is_killed(tmp_path: Path) -> None:
    # Given a process that started the embedded server
    data_dir = tmp_path / ".aum"
    owner, started = _start_holder(data_dir)

    # When it is killed without a chance to clean up
    owner.send_signal(signal.SIGKILL)
    owner.wait(timeout=10)

    # Then the server stops too
    wait_until(lambda: not _running(started["pid"]), timeout=10, what="the orphaned server to stop")
    # ... and the next process starts a new one despite the stale state file
    replacement = _ensure_once(data_dir)
    assert replacement["owned"] is True
    assert replacement["pid"] != started["pid"]
    wait_until(lambda: not _running(replacement["pid"]), timeout=10, what="the new server to stop")


def test_worker_and_sender_share_the_embedded_server_with_no_settings(start_worker, tmp_path: Path) -> None:
    # Given a project directory with task modules in modules/ and no TASK_* setting at all
    shutil.copytree(FIXTURE_MODULES, tmp_path / "modules")
    no_settings: dict[str, str | None] = {"TASK_BROKER_URL": None, "TASK_DATA_DIR": None}

    # When a worker starts there
    worker = start_worker(modules=tmp_path / "modules", env=no_settings)

    # Then it runs on an embedded server it started under .aum/
    assert "broker: embedded valkey" in worker.wait_for_line("broker:")
    state = json.loads((tmp_path / ".aum" / "embedded.json").read_text())
    assert state["url"] == f"unix://{tmp_path / '.aum' / 'redis.sock'}"
    assert _running(state["pid"])

    # When `aum send` in another process of the same directory sends a task
    written = tmp_path / "written.json"
    sent = subprocess.run(
        [sys.executable, "-m", "aury_tasks.cli", "send", "write_file", json.dumps([str(written), "hello"])],
        cwd=tmp_path, env=_environment(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    # Then it went through that server, and the worker ran the task
    assert sent.returncode == 0, sent.stderr
    assert "via embedded valkey" in sent.stderr
    assert sent.stdout.strip()
    wait_until(written.exists, timeout=15, what=f"the task to write {written}")
    assert json.loads(written.read_text())["text"] == "hello"

    # When the worker stops
    # Then the server it started stops with it
    assert worker.stop() == 0, worker.output()
    assert not _running(state["pid"])
    assert not (tmp_path / ".aum" / "embedded.json").exists()
