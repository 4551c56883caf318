"""Fixtures of the API tests: the real app (in this process, over ASGI) on the test Redis.

The app is served through Starlette's TestClient (httpx over ASGI, no socket); the tasks it
sends are run by a real ``aum worker`` when a test starts one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from aury_tasks import TaskManager
from aury_tasks.api import create_app

TOKEN = "full-token-0123456789abcdef"
READ_TOKEN = "read-token-0123456789abcdef"


@pytest.fixture
def api_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both tokens set, before the TaskManager reads the settings."""
    monkeypatch.setenv("TASK_API_TOKEN", TOKEN)
    monkeypatch.setenv("TASK_API_READ_TOKEN", READ_TOKEN)


@pytest.fixture
def app_client(api_env: None, producer: TaskManager) -> Iterator[TestClient]:
    """A client of the app, without credentials."""
    with TestClient(create_app(producer), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def api(app_client: TestClient) -> TestClient:
    """A client of the app with the full token."""
    app_client.headers["Authorization"] = f"Bearer {TOKEN}"
    return app_client


@pytest.fixture
def reader(api_env: None, producer: TaskManager) -> Iterator[TestClient]:
    """A second client with the read-only token."""
    with TestClient(create_app(producer), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {READ_TOKEN}"
        yield client


def wait_until_ended(api: TestClient, task_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """Poll ``GET /api/v1/tasks/{id}/result`` until the task has ended; its answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = api.get(f"/api/v1/tasks/{task_id}/result")
        assert answer.status_code == 200, answer.text
        if answer.json()["ready"]:
            return dict(answer.json())
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not end within {timeout} s")


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    """Status, error code and message of an error answer (which must have the API's shape)."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return response.status_code, body["error"]["code"], body["error"]["message"]


Send = Callable[..., dict[str, Any]]


@pytest.fixture
def send(api: TestClient) -> Send:
    """``send("add", args=[1, 2])``: POST a task, assert 201, return its record."""

    def post(task: str, **body: Any) -> dict[str, Any]:
        answer = api.post("/api/v1/tasks", json={"task": task, **body})
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    return post
