"""Which of Dramatiq's tests do not run on aury-tasks's broker, and why: each a documented difference.

Every skip names a row of the table "Differences from Dramatiq's Redis broker" in
``docs/guide.md`` (``tests/unit/test_conformance_table.py`` checks that each row is there). The tests
that fail only because the broker does not yet honour ``namespace=`` in every script are xfail
instead, while the suite runs the broker on its own namespace (``conftest.NAMESPACE``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Where the differences are documented.
GUIDE_SECTION = "docs/guide.md#differences-from-dramatiqs-redis-broker"


@dataclass(frozen=True)
class Difference:
    """A row of the guide's table: ``name`` is its first cell."""

    name: str
    why: str

    @property
    def reason(self) -> str:
        """The skip reason: the row's name, where it is, and how it bears on the test."""
        return f"documented difference {self.name!r} ({GUIDE_SECTION}): {self.why}"


MAINTENANCE = Difference(
    "Queue maintenance",
    "maintenance runs on its own schedule (a worker seen dead, else every maintenance_interval on a "
    "fetch or send); maintenance_chance is ignored and do_qsize runs none",
)
ACKS = Difference(
    "Acknowledgements",
    "acks go through the process's batching ack thread, not the broker's do_ack (its retry while "
    "Redis is down: tests/integration/test_acks.py)",
)
DELAY_ACKS = Difference(
    "Acknowledgements",
    "a delayed message's ack in its delay queue is batched too, so for a moment after it moved to "
    "its queue do_qsize counts it in both (a join waits a moment longer, never returns early); the "
    "test's exact counts then differ under load (1 run in 8 with two busy cores here)",
)
STUB_API = Difference(
    "Stub broker API",
    "the test uses the stub broker's own API (queues, dead_letters, join re-raising a failed "
    "message's exception), which Dramatiq's RedisBroker lacks as well",
)
MACHINE_REDIS = Difference(
    "RedisBroker's constructor",
    "the test builds Dramatiq's own RedisBroker on the machine's Redis at 127.0.0.1:6379, which "
    "these tests never touch",
)

#: Per test module of ours, the tests skipped and the difference that says why.
SKIPS: dict[str, dict[str, Difference]] = {
    "test_dramatiq_redis": {
        "test_redis_unacked_messages_can_be_requeued": MAINTENANCE,
        "test_redis_dead_lettered_messages_are_cleaned_up": MAINTENANCE,
        "test_redis_consumer_ack_can_retry_on_connection_error": ACKS,
        "test_redis_join_race_condition": DELAY_ACKS,
        "test_redis_broker_can_connect_via_url": MACHINE_REDIS,
        "test_redis_broker_can_connect_via_client": MACHINE_REDIS,
    },
    "test_dramatiq_actors_on_aury": {
        name: STUB_API
        for name in (
            "test_actors_can_be_sent_messages",
            "test_actors_can_be_assigned_time_limits",
            "test_actor_messages_can_be_assigned_time_limits",
            "test_actors_can_be_assigned_message_age_limits",
            "test_actor_messages_can_be_assigned_message_age_limits",
            "test_messages_belonging_to_missing_actors_are_rejected",
            "test_workers_log_rate_limit_exceeded_errors_differently",
            "test_worker_handles_non_numeric_eta_and_logs_warning",
            "test_worker_handles_none_eta",
        )
    },
}

#: The xfail reason of a test that reads Dramatiq's keys (``dramatiq:...``) itself.
NAMESPACE_REASON = "namespace: fixed by the key-prefix change"
#: Per test module of ours, the tests that pass once the broker runs on Dramatiq's namespace.
NAMESPACE_XFAILS: dict[str, frozenset[str]] = {
    "test_dramatiq_redis": frozenset(
        {
            "test_redis_messages_can_be_dead_lettered",
            "test_redis_messages_belonging_to_missing_actors_are_rejected",
            "test_redis_requeues_unhandled_messages_on_shutdown",
            "test_redis_requeues_unhandled_delay_messages_on_shutdown",
        }
    ),
}
