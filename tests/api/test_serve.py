"""``aum serve`` as a real process: one or several server processes, and the settings it refuses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest
from conftest import FIXTURE_MODULES, WorkerProcess

from .conftest import TOKEN


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_several_server_processes_share_the_port_and_serve_the_same_app(
    start_aum: Callable[..., WorkerProcess],
) -> None:
    # Given aum serve with two server processes
    port = _free_port()
    server = start_aum("serve", "--port", str(port), "--workers", "2", "--modules", str(FIXTURE_MODULES),
                       env={"TASK_API_TOKEN": TOKEN})  # fmt: skip
    server.wait_for_line("2 server processes share port")
    base = f"http://127.0.0.1:{port}"
    server.wait_for_line("Application startup complete")

    # When it is asked, with and without the token, more times than it has processes
    with httpx.Client(base_url=base, timeout=10) as client:
        names = [client.get("/api/v1/task-names", headers={"Authorization": f"Bearer {TOKEN}"})
                 for _ in range(20)]  # fmt: skip
        anonymous = client.get("/api/v1/task-names")
        health = client.get("/healthz")

    # Then every process imported the task modules and checks the token
    assert {answer.status_code for answer in names} == {200}
    assert all(any(item["short_name"] == "add" for item in answer.json()["items"]) for answer in names)
    assert anonymous.status_code == 401 and health.status_code == 200
    assert TOKEN not in server.output()


@pytest.mark.parametrize(
    ("arguments", "env", "message"),
    [
        ([], {}, "TASK_API_TOKEN is not set"),
        (["--insecure-no-auth", "--host", "0.0.0.0"], {}, "loopback address only"),
        ([], {"TASK_API_TOKEN": "short"}, "invalid setting TASK_API_TOKEN: expected text of 16 characters"),
        ([], {"TASK_API_TOKEN": TOKEN, "TASK_API_READ_TOKEN": "tiny"}, "invalid setting TASK_API_READ_TOKEN"),
    ],
)
def test_a_server_it_would_be_unsafe_to_start_exits_2_in_one_line(
    redis_url: str, arguments: list[str], env: dict[str, str], message: str
) -> None:
    # When aum serve is started without a token, on a public address without auth, or with short tokens
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TASK_")}
    full_env.update({"TASK_BROKER_URL": redis_url, **env})
    run = subprocess.run(
        [sys.executable, "-m", "aury_tasks.cli", "serve", "--modules", str(FIXTURE_MODULES), *arguments],
        env=full_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    # Then it exits 2 with one line saying why, never echoing a token
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "short" not in run.stderr and "tiny" not in run.stderr
