"""The scheduler's Redis state: definitions as JSON with announcements, fire claims, the leader lease."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from aury_tasks.core import keys
from aury_tasks.core.errors import SchedulerError, SerializationError
from aury_tasks.scheduler.jobs import JobDefinition, JobOptions
from aury_tasks.scheduler.store import LastRun, ScheduleStore
from aury_tasks.scheduler.triggers import trigger_spec


@pytest.fixture
def store(redis_client: redis.Redis) -> ScheduleStore:
    return ScheduleStore(redis_client, keys.DEFAULT)


def job(job_id: str = "daily_cleanup", **changes: object) -> JobDefinition:
    fields: dict = {
        "id": job_id,
        "task_name": "modules.maintenance.tasks.daily_cleanup",
        "queue_name": "batch",
        "trigger": trigger_spec(cron="0 2 * * *"),
        "args": ["all"],
        "kwargs": {"dry_run": False},
    }
    return JobDefinition(**{**fields, **changes})


def test_a_job_is_kept_as_json_and_every_change_is_announced(
    store: ScheduleStore, redis_client: redis.Redis
) -> None:
    # Given a process listening for changes
    changes = redis_client.pubsub(ignore_subscribe_messages=True)
    changes.subscribe(keys.DEFAULT.scheduler_changes())
    assert changes.get_message(timeout=1) is None  # (the subscription is confirmed)

    # When jobs are put, replaced, removed and cleared
    first = job(options=JobOptions(misfire_grace_time=60, jitter=2))
    store.put(first)
    store.put(job("hourly", trigger=trigger_spec(interval=3600)))
    paused = first.changed(paused=True)
    store.put(paused)
    assert store.remove("hourly") is True
    assert store.remove("hourly") is False

    # Then what is read back is what was put, as plain JSON, and each change was announced
    assert store.get("daily_cleanup") == paused
    assert store.all() == [paused]
    assert (
        JobDefinition.from_json(redis_client.hget(keys.DEFAULT.scheduler_jobs(), "daily_cleanup")) == paused
    )
    assert store.get("hourly") is None
    announced = [changes.get_message(timeout=1)["data"] for _ in range(5)]
    assert announced == ["put:daily_cleanup", "put:hourly", "put:daily_cleanup", "remove:hourly",
                         "remove:hourly"]  # fmt: skip
    assert store.clear() == 1 and store.all() == []
    assert changes.get_message(timeout=1)["data"] == "clear"
    changes.close()


def test_a_definition_that_cannot_be_read_is_left_out_not_fatal(
    store: ScheduleStore, redis_client: redis.Redis
) -> None:
    store.put(job())
    redis_client.hset(keys.DEFAULT.scheduler_jobs(), "broken", '{"id": "broken"}')
    assert [definition.id for definition in store.all()] == ["daily_cleanup"]
    with pytest.raises(SchedulerError, match="not a job definition"):
        store.get("broken")


def test_each_planned_fire_is_claimed_exactly_once(store: ScheduleStore, redis_client: redis.Redis) -> None:
    # Given 20 threads racing for the same fire of the same job, and another planned time
    planned = 1_795_000_000.0
    won: list[bool] = []
    barrier = threading.Barrier(20)

    def claim() -> None:
        barrier.wait()
        won.append(store.claim_fire("daily_cleanup", planned, ttl=60))

    threads = [threading.Thread(target=claim) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then exactly one won it, the next planned time is a fire of its own, and the claim expires
    assert won.count(True) == 1
    assert store.claim_fire("daily_cleanup", planned + 1, ttl=60) is True
    assert store.claim_fire("other", planned, ttl=60) is True
    assert (
        0 < redis_client.pttl(keys.DEFAULT.scheduler_fire("daily_cleanup", round(planned * 1000))) <= 60_000
    )


def test_one_leader_at_a_time_renewed_released_and_taken_over(store: ScheduleStore) -> None:
    # Given a leader
    assert store.acquire_lease("host-a:1", ttl=0.5) is True
    # Then another process cannot take the lease, the leader can renew it, and only it can release it
    assert store.acquire_lease("host-b:2", ttl=0.5) is False
    assert store.acquire_lease("host-a:1", ttl=0.5) is True
    assert store.release_lease("host-b:2") is False
    assert store.leader() == "host-a:1"

    # When the leader stops renewing, the lease expires and another process takes it
    time.sleep(0.6)
    assert store.leader() is None
    assert store.acquire_lease("host-b:2", ttl=5) is True
    assert store.acquire_lease("host-a:1", ttl=5) is False  # the old leader is a follower now

    # And a leader that releases on shutdown lets the next one in at once
    assert store.release_lease("host-b:2") is True
    assert store.acquire_lease("host-a:1", ttl=5) is True


def test_the_last_run_of_each_job_is_kept_until_the_job_goes(store: ScheduleStore) -> None:
    store.put(job())
    store.record_run("daily_cleanup", LastRun(planned_at=10.0, fired_at=10.004, task_id="t-1"))
    store.record_run("daily_cleanup", LastRun(planned_at=20.0, fired_at=20.003, task_id="t-2"))
    assert store.last_runs() == {"daily_cleanup": LastRun(20.0, 20.003, "t-2")}
    store.remove("daily_cleanup")
    assert store.last_runs() == {}


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"id": "daily cleanup"}, SchedulerError, "a job id is a non-empty name without spaces"),
        ({"id": ""}, SchedulerError, "a job id is a non-empty name without spaces"),
        ({"origin": "cli"}, SchedulerError, "origin is one of code, runtime, got 'cli'"),
        ({"args": [float("nan")]}, SerializationError, "argument 0 of modules.maintenance.tasks.daily"),
        ({"kwargs": {"when": object()}}, SerializationError, "argument 'when' of"),
    ],
)
def test_a_wrong_definition_is_refused_before_it_is_kept(changes: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        job(**changes)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_instances": 0}, "max_instances must be 1 or more, got 0"),
        ({"misfire_grace_time": 0}, "misfire_grace_time must be above 0 seconds, got 0"),
        ({"jitter": -1}, "jitter must be 0 seconds or more, got -1"),
    ],
)
def test_wrong_job_options_are_one_clear_line(options: dict, message: str) -> None:
    with pytest.raises(SchedulerError) as caught:
        JobOptions(**options)
    assert caught.value.message == message
