"""The API against its own OpenAPI document: no generated input makes it fail (schemathesis).

A real ``aum serve`` (uvicorn, the fixture tasks, the test Redis) is fuzzed by schemathesis'
command line: every operation of ``/api/openapi.json`` gets generated inputs, valid and
invalid, boundary values included, and every answer must be a deliberate one (below 500).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import FIXTURE_MODULES, WorkerProcess

from .conftest import READ_TOKEN, TOKEN


@pytest.mark.timeout(600)  # about 80 s here: 25 generated inputs for each of 34 operations
def test_no_generated_input_is_answered_with_a_server_error(
    start_aum: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    # Given aum serve with the fixture tasks
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_aum("serve", "--port", str(port), "--modules", str(FIXTURE_MODULES),
                       env={"TASK_API_TOKEN": TOKEN, "TASK_API_READ_TOKEN": READ_TOKEN})  # fmt: skip
    server.wait_for_line("Uvicorn running")

    # When schemathesis sends every operation generated inputs with the full token
    run = subprocess.run(
        [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()", "run", f"http://127.0.0.1:{port}/api/openapi.json",
         "--header", f"Authorization: Bearer {TOKEN}", "--checks", "not_a_server_error",
         "--max-examples", "25", "--seed", "8686", "--request-timeout", "20", "--no-color",
         "--report-dir", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip

    # Then no answer was a server error
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\nserver log:\n{server.output()[-5000:]}"
    assert "500" not in [line.split()[-1] for line in server.lines if '" 5' in line]
