"""``TASK_BROKER_MIN_REPLICAS``: sends and acknowledgements wait for replicas (Redis ``WAIT``).

Against the test Redis (no replica) for what the setting costs when off and what a send does when
its replicas do not answer; against a master and its replica (``tests/sentinel_redis.py``) for
what it guarantees.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sentinel_redis import SentinelDeployment, start_sentinel_deployment

from aury_tasks import BrokerUnavailable, ReplicationTimeout, TaskManager
from aury_tasks.config.settings import get_settings
from aury_tasks.core import keys
from aury_tasks.core.status import TaskStatus

FIXTURE_MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "sample_modules"


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelDeployment]:
    deployment = start_sentinel_deployment(tmp_path / "sentinels")
    yield deployment
    deployment.stop()


def _producer(url: str, monkeypatch: pytest.MonkeyPatch, import_modules, **settings: str) -> TaskManager:
    monkeypatch.setenv("TASK_BROKER_URL", url)
    for name, value in settings.items():
        monkeypatch.setenv(f"TASK_{name.upper()}", value)
    get_settings.cache_clear()
    TaskManager.reset_instance()
    tm = TaskManager.get_instance()
    import_modules(FIXTURE_MODULES)
    return tm


def _waits_run(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def test_by_default_no_write_waits_for_replicas(
    redis_url: str, redis_client: redis.Redis, start_worker, monkeypatch: pytest.MonkeyPatch, import_modules
) -> None:
    # Given a producer and a worker with the default setting
    redis_client.config_resetstat()
    producer = _producer(redis_url, monkeypatch, import_modules)
    start_worker("-q", "fixture")

    # When tasks are sent one by one and in bulk, and run
    handles = [producer.get_task("add").send(n, 1) for n in range(3)]
    handles += producer.get_task("add").send_many([(n, 2) for n in range(3)])
    assert [handle.get_result(timeout=20) for handle in handles] == [1, 2, 3, 2, 3, 4]

    # Then not one WAIT reached Redis
    assert _waits_run(redis_client) == 0


def test_a_send_its_replicas_do_not_confirm_raises_broker_unavailable(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, import_modules
) -> None:
    # Given a producer that asks for one replica, on a Redis that has none
    producer = _producer(
        redis_url, monkeypatch, import_modules, broker_min_replicas="1", broker_replica_timeout_ms="50"
    )

    # When it sends, one by one and in bulk
    with pytest.raises(ReplicationTimeout) as single:
        producer.get_task("add").send(1, 1)
    with pytest.raises(BrokerUnavailable) as bulk:
        producer.get_task("add").send_many([(1, 1), (2, 2)])

    # Then each send says it may be kept and what to do; the master kept them meanwhile
    for raised in (single, bulk):
        message = str(raised.value)
        assert "0 of 1 replica(s) had the write within 50 ms" in message
        assert "may or may not be kept" in message
        assert "idempotency_key=" in message
    assert redis_client.llen(keys.DEFAULT.broker_queue("fixture")) == 3
    assert _waits_run(redis_client) == 2


def test_a_confirmed_send_and_its_result_are_on_the_replica(
    sentinels: SentinelDeployment, start_worker, monkeypatch: pytest.MonkeyPatch, import_modules
) -> None:
    # Given a producer and a worker that wait for one replica, through the sentinels
    producer = _producer(sentinels.url, monkeypatch, import_modules, broker_min_replicas="1")
    replica = redis.Redis(port=sentinels.replica_port)
    master = redis.Redis(port=sentinels.master_port)
    master.config_resetstat()
    worker = start_worker(
        "-q", "fixture", env={"TASK_BROKER_URL": sentinels.url, "TASK_BROKER_MIN_REPLICAS": "1"}
    )

    # When a send returns
    handle = producer.get_task("add").send(20, 22)

    # Then the replica has its message's record already, and the task runs through
    assert replica.exists(keys.DEFAULT.task_record(handle.id))
    assert handle.get_result(timeout=20) == 42
    assert handle.status() is TaskStatus.SUCCESS
    # (the acknowledgement's batch, which wrote the result, waits for the replica after it)
    deadline = time.monotonic() + 10
    while _waits_run(master) < 2:
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)
