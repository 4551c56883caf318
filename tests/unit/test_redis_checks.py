"""What a worker warns about the Redis it uses: how it connects (no server needed here)."""

from __future__ import annotations

import pytest
import redis

from aury_tasks.broker.redis.checks import connection_warnings, is_loopback, too_old


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://10.0.0.5:6379/0", ["without TLS", "default user without a password"]),
        ("redis://:s3cret@10.0.0.5:6379/0", ["without TLS"]),
        ("redis://worker:s3cret@redis.internal:6379/0", ["without TLS"]),
        ("rediss://redis.internal:6380/0", ["default user without a password"]),
        ("rediss://:s3cret@redis.internal:6380/0", []),
        ("redis://127.0.0.1:6379/0", []),
        ("redis://localhost:6379/0", []),
        ("redis://[::1]:6379/0", []),
        ("unix:///run/redis.sock", []),
    ],
)
def test_a_network_connection_without_tls_or_password_is_warned_about(url: str, expected: list[str]) -> None:
    client = redis.Redis.from_url(url)  # never connects: only its settings are read

    warnings = connection_warnings(client, role="broker")

    assert len(warnings) == len(expected)
    for warning, text in zip(warnings, expected, strict=True):
        assert text in warning and warning.startswith("the broker Redis at ")
        assert "s3cret" not in warning


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("10.0.0.5", False), ("redis.internal", False), ("0.0.0.0", False)],
)  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


class _Server:
    """Answers INFO server as a server of ``version`` would (the part too_old reads)."""

    def __init__(self, version: str) -> None:
        self.version = version

    def info(self, section: str) -> dict[str, str]:
        assert section == "server"
        return {"redis_version": self.version}


@pytest.mark.parametrize(
    ("version", "old"),
    [("5.0.7", True), ("6.0.16", True), ("6.2.0", False), ("7.0.15", False), ("8.1.8", False), ("", False)],
)
def test_a_server_older_than_redis_6_2_is_too_old(version: str, old: bool) -> None:
    assert (too_old(_Server(version)) == version) is old  # type: ignore[arg-type]
