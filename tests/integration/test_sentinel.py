"""Redis Sentinel: a producer and ``aum worker`` on a ``redis+sentinel://`` URL, and ``aum doctor``'s report.

The deployment (a master, one replica, three sentinels) is the embedded server binary on private
ports: see ``tests/sentinel_redis.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sentinel_redis import MASTER_NAME, SentinelDeployment, start_sentinel_deployment

from aury_tasks import TaskManager
from aury_tasks.config.settings import get_settings
from aury_tasks.core import keys
from aury_tasks.core.status import TaskStatus

FIXTURE_MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "sample_modules"


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelDeployment]:
    deployment = start_sentinel_deployment(tmp_path / "sentinels")
    yield deployment
    deployment.stop()


def _producer(url: str, monkeypatch: pytest.MonkeyPatch, import_modules) -> TaskManager:
    monkeypatch.setenv("TASK_BROKER_URL", url)
    get_settings.cache_clear()
    TaskManager.reset_instance()
    tm = TaskManager.get_instance()
    import_modules(FIXTURE_MODULES)
    return tm


def test_tasks_go_through_the_master_the_sentinels_name(
    sentinels: SentinelDeployment, start_worker, monkeypatch: pytest.MonkeyPatch, import_modules
) -> None:
    # Given a producer and a worker that know only the sentinels
    producer = _producer(sentinels.url, monkeypatch, import_modules)
    start_worker("-q", "fixture", env={"TASK_BROKER_URL": sentinels.url})

    # When tasks are sent
    handles = [producer.get_task("add").send(n, 1) for n in range(5)]

    # Then the worker runs them, the ledger shows them succeeded, and they were kept on the master
    assert [handle.get_result(timeout=20) for handle in handles] == [n + 1 for n in range(5)]
    assert {handle.status() for handle in handles} == {TaskStatus.SUCCESS}
    assert producer.broker.client.connection_pool.get_master_address()[1] == sentinels.master_port


def test_a_send_after_a_failover_reaches_the_new_master(
    sentinels: SentinelDeployment, monkeypatch: pytest.MonkeyPatch, import_modules
) -> None:
    # Given a producer that sent once through the sentinels
    producer = _producer(sentinels.url, monkeypatch, import_modules)
    producer.get_task("add").send(1, 1)

    # When the sentinels fail the master over to the replica, and the old master follows it
    # (until then the old master takes writes the new one never sees: TASK_BROKER_MIN_REPLICAS'
    # concern, not this test's)
    old_master = redis.Redis(port=sentinels.master_port)
    deadline = time.monotonic() + 30
    while True:  # a sentinel whose view of the replica is a beat old answers NOGOODSLAVE: ask again
        try:
            sentinels.sentinel().execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
            break
        except redis.ResponseError as exc:
            assert "NOGOODSLAVE" in str(exc) and time.monotonic() < deadline, exc
            time.sleep(0.5)
    while {sentinels.master_port_named_by(number) for number in range(3)} != {sentinels.replica_port} or (
        old_master.execute_command("ROLE")[0] != b"slave"
    ):
        assert time.monotonic() < deadline, "the failover did not complete"
        time.sleep(0.1)

    # Then the producer's next send, on its pooled connections to the old master, succeeds and
    # is kept on the new master
    handle = producer.get_task("add").send(2, 2)
    assert handle.status() is TaskStatus.PENDING
    new_master = redis.Redis(port=sentinels.replica_port)
    assert new_master.exists(keys.DEFAULT.task_record(handle.id))
    assert new_master.execute_command("ROLE")[0] == b"master"


def test_doctor_reports_the_master_its_replicas_and_the_sentinels(
    sentinels: SentinelDeployment, start_aum
) -> None:
    # When aum doctor checks a deployment on the sentinel URL
    doctor = start_aum("doctor", "--modules", str(FIXTURE_MODULES), env={"TASK_BROKER_URL": sentinels.url})
    doctor.wait(30)

    # Then one line names the master, its replica and how many sentinels agree
    line = doctor.wait_for_line("broker sentinels")
    assert f"master 127.0.0.1:{sentinels.master_port} ({MASTER_NAME})" in line
    assert f"replicas 127.0.0.1:{sentinels.replica_port}" in line
    assert "3 of 3 sentinels agree (3 known, quorum 2)" in line
    assert line.startswith("ok ")
