"""The key space: the default prefix gives the key strings aury-tasks always used; another prefix
puts every key under it; a prefix that cannot be one is refused, as the setting that names it."""

from __future__ import annotations

import inspect

import pytest

from aury_tasks.config.settings import TaskSettings
from aury_tasks.core import keys
from aury_tasks.core.errors import ConfigError
from aury_tasks.core.keys import DEFAULT, KeySpace

#: Every key of the default prefix, as aury-tasks wrote it before the prefix was a setting.
LEGACY = {
    "task_record": ("aury:ledger:task:t1", "t1"),
    "all_index": ("aury:ledger:idx:all",),
    "queue_index": ("aury:ledger:idx:queue:q", "q"),
    "task_name_index": ("aury:ledger:idx:task:m.t", "m.t"),
    "task_queue_index": ("aury:ledger:idx:task:m.t:queue:q", "m.t", "q"),
    "status_index": ("aury:ledger:idx:status:pending", "pending"),
    "unindexed": ("aury:ledger:unindexed",),
    "known_queues": ("aury:ledger:queues",),
    "known_task_names": ("aury:ledger:tasks",),
    "idempotency_done": ("aury:ledger:done:k", "k"),
    "task_events": ("aury:ledger:events:t1", "t1"),
    "cancel_channel": ("aury:ledger:cancel",),
    "cancelled_ids": ("aury:ledger:cancelled",),
    "stats_bucket": ("aury:ledger:stats:m:7:q:q", "m", 7, "q:q"),
    "workers": ("aury:ledger:workers",),
    "workers_seen": ("aury:ledger:workers:seen",),
    "maintenance_lock": ("aury:ledger:maintenance",),
    "broker_queue": ("aury:q", "q"),
    "broker_messages": ("aury:q.msgs", "q"),
    "broker_fetched": ("aury:__acks__.b1.q", "b1", "q"),
    "broker_fetched_prefix": ("aury:__acks__.",),
    "suspects": ("aury:suspects:q", "q"),
    "running_suspects": ("aury:running-suspects:q", "q"),
    "dead_letters": ("aury:q.XQ", "q"),
    "dead_letter_messages": ("aury:q.XQ.msgs", "q"),
    "scheduler_jobs": ("aury:scheduler:jobs",),
    "scheduler_runs": ("aury:scheduler:runs",),
    "scheduler_changes": ("aury:scheduler:changes",),
    "scheduler_leader": ("aury:scheduler:leader",),
    "scheduler_fire": ("aury:scheduler:fire:j:5", "j", 5),
    "scheduler_fire_counts": ("aury:scheduler:fired",),
    "scheduler_miss_counts": ("aury:scheduler:missed",),
    "time_limit_counts": ("aury:ledger:timelimits:9", 9),
    "group_state": ("aury:ledger:group:g", "g"),
    "rate_limit": ("aury:limits:rate:m.t", "m.t"),
    "concurrency_leases": ("aury:limits:concurrency:m.t", "m.t"),
    "unique_lock": ("aury:limits:unique:m.t:d", "m.t", "d"),
    "priority_queue": ("aury:q.PQ", "q"),
    "priority_sequence": ("aury:q.PQ.seq", "q"),
    "broker_heartbeats": ("aury:__heartbeats__",),
    "doctor_probe": ("aury:doctor",),
    "workflow_owed": ("aury:ledger:owed",),
    "wake_channel": ("aury:wake:q", "q"),
    "wake_pattern": ("aury:wake:*",),
    "wake_stop_channel": ("aury:wake-stop:w", "w"),
    "idle_marker": ("aury:idle:q", "q"),
    "alert_rules": ("aury:alerts:rules",),
    "alert_incidents": ("aury:alerts:incidents",),
}


def _key_methods() -> list[str]:
    return [name for name, member in inspect.getmembers(KeySpace, inspect.isfunction)
            if not name.startswith("_") and name != "pattern"]  # fmt: skip


def test_every_key_method_is_in_the_table() -> None:
    assert sorted(_key_methods()) == sorted(LEGACY)


@pytest.mark.parametrize("method", sorted(LEGACY))
def test_the_default_prefix_gives_the_keys_as_they_always_were(method: str) -> None:
    expected, *args = LEGACY[method]
    assert getattr(DEFAULT, method)(*args) == expected


@pytest.mark.parametrize("method", sorted(LEGACY))
def test_another_prefix_puts_the_key_under_it_and_nothing_else_changes(method: str) -> None:
    expected, *args = LEGACY[method]
    key = getattr(KeySpace("shop-staging"), method)(*args)
    assert key == "shop-staging:" + expected.removeprefix("aury:")
    assert key.startswith("shop-staging:") and "aury" not in key


def test_the_status_index_of_one_queue_or_one_task() -> None:
    space = KeySpace("x")
    assert space.status_index("failure", queue_name="q") == "x:ledger:idx:status:failure:queue:q"
    assert space.status_index("failure", task_name="m.t") == "x:ledger:idx:status:failure:task:m.t"


def test_the_parts_prefixes_and_the_acl_pattern() -> None:
    space = KeySpace("app.prod")
    assert (space.ledger_prefix, space.scheduler_prefix, space.alerts_prefix, space.limits_prefix) == (
        "app.prod:ledger:", "app.prod:scheduler:", "app.prod:alerts:", "app.prod:limits:"
    )  # fmt: skip
    assert space.pattern() == "app.prod:*"
    assert DEFAULT == KeySpace() == KeySpace(keys.DEFAULT_PREFIX)


@pytest.mark.parametrize("prefix", ["", "a b", "a\tb", "a*", "a?", "a[0]", "a\\b", "aury:"])
def test_a_prefix_that_cannot_be_one_is_refused(prefix: str) -> None:
    assert keys.prefix_problem(prefix) is not None
    with pytest.raises(ValueError, match="invalid key prefix"):
        KeySpace(prefix)


@pytest.mark.parametrize("prefix", ["aury", "dramatiq", "shop-staging", "app.prod", "a:b", "t_1"])
def test_a_usable_prefix_is_taken(prefix: str) -> None:
    assert keys.prefix_problem(prefix) is None
    assert KeySpace(prefix).prefix == prefix


def test_the_setting_gives_the_key_space_and_its_snapshot_the_same() -> None:
    settings = TaskSettings.load(key_prefix="billing")
    assert settings.keys == KeySpace("billing")
    assert settings.snapshot().keys == KeySpace("billing")
    assert TaskSettings.load().keys == DEFAULT


@pytest.mark.parametrize("prefix", ["", "billing:*", "billing:", "my app"])
def test_a_bad_setting_names_the_variable_and_exits_2(prefix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TaskSettings.load(key_prefix=prefix)
    assert caught.value.message.startswith(
        "invalid setting TASK_KEY_PREFIX: expected a prefix without spaces"
    )
    assert caught.value.exit_code == 2
