"""A TLS-only redis-server for tests, its certificate signed by a certificate authority made in the test.

The embedded server is built without TLS, so this runs a ``redis-server`` (or ``valkey-server``)
from PATH built with it, and makes the certificates with the ``openssl`` CLI. Tests skip with
:data:`SKIP_REASON` where :func:`tls_server_binary` finds none.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

#: Why a TLS test is skipped.
SKIP_REASON = "needs openssl and a TLS-built redis-server or valkey-server on PATH (the embedded has none)"


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


def tls_server_binary() -> str | None:
    """A server binary on PATH built with TLS, or ``None`` (none, or no ``openssl``)."""
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None or shutil.which("openssl") is None:
        return None
    probe = subprocess.run([binary, "--port", "0", "--tls-port", "1", "--tls-cert-file", "/nonexistent"],
                           capture_output=True, text=True, timeout=10)  # fmt: skip
    return None if "TLS support" in probe.stdout + probe.stderr else binary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class TlsRedis:
    """A running TLS-only server; ``good_ca`` signed its certificate, ``wrong_ca`` did not."""

    process: subprocess.Popen[bytes]
    port: int
    password: str | None
    good_ca: Path
    wrong_ca: Path
    directory: Path

    def url(self, ca: Path) -> str:
        """Its ``rediss://`` URL (with the password, if any) trusting ``ca``."""
        auth = f":{self.password}@" if self.password else ""
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"

    def client(self) -> redis.Redis:
        """A client trusting the right CA (text replies)."""
        return redis.Redis.from_url(self.url(self.good_ca), decode_responses=True)

    def stop(self) -> None:
        """Terminate the server."""
        self.process.terminate()
        self.process.wait(10)


def start_tls_redis(binary: str, directory: Path, password: str | None = None) -> TlsRedis:
    """Make the certificates in ``directory``, start the server there and wait until it answers."""
    certs = directory / "certs"
    certs.mkdir()
    good_ca, wrong_ca = make_ca(certs, "good"), make_ca(certs, "wrong")
    cert, key = make_server_cert(certs, "good")
    port = _free_port()
    auth = ["--requirepass", password] if password else []
    process = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
         "--tls-key-file", str(key), "--tls-ca-cert-file", str(good_ca), "--tls-auth-clients", "no",
         "--bind", "127.0.0.1", "--dir", str(directory), "--save", "", "--appendonly", "yes",
         *auth, "--daemonize", "no", "--logfile", str(directory / "server.log")],
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    server = TlsRedis(process, port, password, good_ca, wrong_ca, directory)
    client = server.client()
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                client.ping()
                return server
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    log = directory / "server.log"
                    raise RuntimeError(f"the TLS server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.05)
    finally:
        client.close()
