"""Who may call the API: tokens, read-only access, dashboard sessions with CSRF, refusals."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from aury_tasks import TaskManager
from aury_tasks.api import create_app
from aury_tasks.api.auth import CSRF_HEADER, SESSION_COOKIE, Role, Tokens
from aury_tasks.core.errors import ConfigError

from .conftest import READ_TOKEN, TOKEN, Send, error_of


def test_every_endpoint_but_healthz_needs_a_token(app_client: TestClient) -> None:
    # Given a client without credentials
    # When it calls the API, the metrics and the health check
    queues = app_client.get("/api/v1/queues")
    metrics = app_client.get("/metrics")
    wrong = app_client.get("/api/v1/queues", headers={"Authorization": "Bearer not-the-token-at-all"})
    health = app_client.get("/healthz")

    # Then only the health check answers; the others say what is missing, in the API's shape
    assert error_of(queues)[:2] == (401, "unauthorized")
    assert "Authorization: Bearer" in error_of(queues)[2]
    assert queues.headers["WWW-Authenticate"] == "Bearer"
    assert error_of(metrics)[:2] == (401, "unauthorized")
    assert error_of(wrong) == (401, "unauthorized", "wrong token")
    assert health.status_code == 200 and health.json()["redis"] is True


def test_the_read_token_reads_without_arguments_or_results(
    api: TestClient, reader: TestClient, send: Send
) -> None:
    # Given a task sent with arguments (by the full token)
    sent = send("echo", args=[{"secret": "s3"}], metadata={"user": "42"})

    # When the read-only token reads it, and tries to send, cancel and purge
    seen = reader.get(f"/api/v1/tasks/{sent['id']}").json()
    listed = reader.get("/api/v1/tasks").json()["items"]
    result = reader.get(f"/api/v1/tasks/{sent['id']}/result").json()
    refused = [
        reader.post("/api/v1/tasks", json={"task": "echo", "args": [1]}),
        reader.delete(f"/api/v1/tasks/{sent['id']}"),
        reader.delete("/api/v1/queues/fixture/dead-letters"),
    ]

    # Then it sees the record without arguments, and every change is forbidden
    assert seen["args"] is None and seen["kwargs"] is None and seen["redacted"] is True
    assert seen["task_name"].endswith("echo") and seen["metadata"] == {"user": "42"}
    assert [item["args"] for item in listed] == [None]
    assert result["result"] is None and result["redacted"] is True
    assert [error_of(answer)[:2] for answer in refused] == [(403, "forbidden")] * 3
    # while the full token sees the arguments
    assert api.get(f"/api/v1/tasks/{sent['id']}").json()["args"] == [{"secret": "s3"}]


def test_a_dashboard_session_needs_its_csrf_token_to_change_anything(app_client: TestClient) -> None:
    # Given a session opened with the full token
    login = app_client.post("/api/v1/session", json={"token": TOKEN})
    assert login.status_code == 200
    csrf = login.json()["csrf_token"]
    assert login.json()["role"] == "full" and app_client.cookies.get(SESSION_COOKIE)
    assert (
        "httponly" in login.headers["set-cookie"].lower()
        and "samesite=strict" in login.headers["set-cookie"].lower()
    )

    # When it reads, then sends a task without and with the CSRF header
    read = app_client.get("/api/v1/queues")
    session = app_client.get("/api/v1/session")
    body = {"task": "add", "args": [1, 2]}
    without = app_client.post("/api/v1/tasks", json=body)
    forged = app_client.post("/api/v1/tasks", json=body, headers={CSRF_HEADER: csrf[:-2] + "xx"})
    with_csrf = app_client.post("/api/v1/tasks", json=body, headers={CSRF_HEADER: csrf})

    # Then reading needs no CSRF token, changing does
    assert read.status_code == 200
    assert session.json() == {"role": "full", "csrf_token": csrf, "auth": True}
    assert error_of(without)[:2] == (403, "forbidden") and CSRF_HEADER in error_of(without)[2]
    assert error_of(forged)[:2] == (403, "forbidden")
    assert with_csrf.status_code == 201

    # and after logging out the cookie is gone
    assert app_client.delete("/api/v1/session").status_code == 204
    app_client.cookies.clear()
    assert app_client.get("/api/v1/queues").status_code == 401


def test_a_wrong_login_opens_no_session(app_client: TestClient) -> None:
    # When the dashboard logs in with a wrong token, then with the read token
    wrong = app_client.post("/api/v1/session", json={"token": "guess-guess-guess-guess"})
    read = app_client.post("/api/v1/session", json={"token": READ_TOKEN})

    # Then the first is refused without a cookie, the second opens a read-only session
    assert error_of(wrong)[:2] == (401, "unauthorized") and "set-cookie" not in wrong.headers
    assert read.json()["role"] == "read"
    assert app_client.get("/api/v1/queues").status_code == 200
    assert app_client.delete("/api/v1/queues/fixture/dead-letters",
                             headers={CSRF_HEADER: read.json()["csrf_token"]}).status_code == 403  # fmt: skip


def test_sessions_are_signed_expire_and_end_when_the_token_changes() -> None:
    # Given a session opened for the full role
    tokens = Tokens(TOKEN, READ_TOKEN)
    session, csrf = tokens.open_session(Role.FULL, now=1000.0)

    # Then it is valid until it expires, and not under another token or once tampered with
    assert tokens.session_role(session, now=1001.0) is Role.FULL
    assert tokens.session_role(session, now=1000.0 + 13 * 3600) is None
    assert Tokens("another-full-token-000000", READ_TOKEN).session_role(session, now=1001.0) is None
    assert tokens.session_role(session.replace("full.", "read.", 1), now=1001.0) is None
    assert tokens.session_role("garbage", now=1001.0) is None
    assert csrf == tokens.csrf_token(Role.FULL, session) != tokens.csrf_token(Role.FULL, session + "x")


def test_the_app_refuses_to_start_without_a_token(producer: TaskManager) -> None:
    # Given no TASK_API_TOKEN
    # When the app is created without and with the explicit opt-out
    with pytest.raises(ConfigError, match="TASK_API_TOKEN is not set"):
        create_app(producer)
    open_app = create_app(producer, insecure_no_auth=True)

    # Then only the opt-out serves, to everyone, with full access
    with TestClient(open_app) as client:
        assert client.get("/api/v1/queues").status_code == 200
        assert client.get("/api/v1/session").json()["role"] == "full"


def test_bodies_over_the_cap_are_refused_before_they_are_read(
    monkeypatch: pytest.MonkeyPatch, api: TestClient
) -> None:
    # Given the default cap of 2 MiB
    # When a body of 3 MiB is sent, declared and chunked
    big = b'{"task": "echo", "args": ["' + b"x" * (3 * 1024 * 1024) + b'"]}'
    declared = api.post("/api/v1/tasks", content=big, headers={"Content-Type": "application/json"})
    chunked = api.post("/api/v1/tasks", content=iter([big[:1000], big[1000:]]),
                       headers={"Content-Type": "application/json"})  # fmt: skip

    # Then both are refused with 413 in the API's shape
    assert error_of(declared)[:2] == (413, "payload_too_large")
    assert "TASK_API_MAX_BODY_BYTES" in error_of(chunked)[2]
