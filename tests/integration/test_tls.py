"""TLS to Redis: a certificate authority made in the test; the right CA works, a wrong one fails closed.

The embedded server is built without TLS, so this runs a ``redis-server`` from PATH built with it
(skipped, saying so, where there is none), and makes its certificates with the ``openssl`` CLI.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from aury_tasks import BrokerUnavailable, TaskManager
from aury_tasks.settings import get_settings

FIXTURE_MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "sample_modules"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Path:
    """A self-signed certificate authority ``<name>-ca.pem`` (key beside it)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name} test CA",
             "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.pem", cwd=directory)  # fmt: skip
    return directory / f"{name}-ca.pem"


def make_server_cert(directory: Path, ca: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by ``ca``."""
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
             "-out", "server.csr", cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}-ca.pem", "-CAkey", f"{ca}-ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem",
             cwd=directory)  # fmt: skip
    return directory / "server.pem", directory / "server.key"


def _tls_server_binary() -> str | None:
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None or shutil.which("openssl") is None:
        return None
    probe = subprocess.run([binary, "--port", "0", "--tls-port", "1", "--tls-cert-file", "/nonexistent"],
                           capture_output=True, text=True, timeout=10)  # fmt: skip
    return None if "TLS support" in probe.stdout + probe.stderr else binary


@dataclass
class TlsRedis:
    port: int
    good_ca: Path
    wrong_ca: Path

    def url(self, ca: Path) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    binary = _tls_server_binary()
    if binary is None:
        pytest.skip(
            "needs openssl and a redis-server or valkey-server on PATH built with TLS"
            " (the embedded server is built without it)"
        )
    certs = tmp_path / "certs"
    certs.mkdir()
    good_ca, wrong_ca = make_ca(certs, "good"), make_ca(certs, "wrong")
    cert, key = make_server_cert(certs, "good")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
         "--tls-key-file", str(key), "--tls-ca-cert-file", str(good_ca), "--tls-auth-clients", "no",
         "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "", "--appendonly", "yes",
         "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server = TlsRedis(port, good_ca, wrong_ca)
    client = redis.Redis.from_url(server.url(good_ca))
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    client.close()
    yield server
    process.terminate()
    process.wait(10)


def _producer(url: str, monkeypatch: pytest.MonkeyPatch, import_modules) -> TaskManager:
    monkeypatch.setenv("TASK_BROKER_URL", url)
    get_settings.cache_clear()
    TaskManager.reset_instance()
    tm = TaskManager.get_instance()
    import_modules(FIXTURE_MODULES)
    return tm


def test_tasks_travel_over_tls_with_the_right_ca(
    tls_redis: TlsRedis, start_worker, monkeypatch: pytest.MonkeyPatch, import_modules
) -> None:
    # Given a producer and a worker that reach Redis over TLS, trusting the CA that signed it
    url = tls_redis.url(tls_redis.good_ca)
    producer = _producer(url, monkeypatch, import_modules)
    worker = start_worker("-q", "fixture", env={"TASK_BROKER_URL": url})

    # Then a task goes through, and the worker does not warn about TLS
    assert producer.get_task("add").send(20, 22).get_result(timeout=20) == 42
    assert "without TLS" not in worker.output()


def test_a_wrong_ca_fails_closed(
    tls_redis: TlsRedis, start_worker, monkeypatch: pytest.MonkeyPatch, import_modules
) -> None:
    # Given clients that trust another CA than the one that signed the server's certificate
    url = tls_redis.url(tls_redis.wrong_ca)
    producer = _producer(url, monkeypatch, import_modules)

    # Then a send fails with BrokerUnavailable (nothing is sent in clear), and a worker does not start
    with pytest.raises(BrokerUnavailable, match="certificate verify failed"):
        producer.get_task("add").send(1, 1)
    worker = start_worker("-q", "fixture", env={"TASK_BROKER_URL": url}, ready=False)
    assert worker.wait(30) == 4
    assert "certificate verify failed" in worker.lines[-1]
