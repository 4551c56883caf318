"""TLS to Redis: a certificate authority made in the test; the right CA works, a wrong one fails closed.

The embedded server is built without TLS, so this runs a ``redis-server`` from PATH built with it
(skipped, saying so, where there is none): see ``tests/tls_redis.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tls_redis import SKIP_REASON, TlsRedis, start_tls_redis, tls_server_binary

from aury_tasks import BrokerUnavailable, TaskManager
from aury_tasks.config.settings import get_settings

FIXTURE_MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "sample_modules"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    binary = tls_server_binary()
    if binary is None:
        pytest.skip(SKIP_REASON)
    server = start_tls_redis(binary, tmp_path)
    yield server
    server.stop()


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
