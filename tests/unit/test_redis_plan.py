"""Command plans: one read written once, its steps sent by the client that runs it."""

from __future__ import annotations

from typing import Any

import pytest

from aury_tasks.redis.plan import Batch, Command, Emit, Plan, run, stream


class RecordingClient:
    """A stand-in sync client: replies to hget and records what it was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    def hget(self, key: str, field: str) -> str:
        self.sent.append(("hget", (key, field)))
        return f"{key}.{field}"

    def pipeline(self, transaction: bool) -> RecordingPipeline:
        assert transaction is False
        return RecordingPipeline(self)


class RecordingPipeline:
    def __init__(self, client: RecordingClient) -> None:
        self.client = client
        self.queued: list[tuple[str, str]] = []

    def hget(self, key: str, field: str) -> RecordingPipeline:
        self.queued.append((key, field))
        return self

    def execute(self) -> list[str]:
        self.client.sent.append(("pipeline", tuple(self.queued)))
        return [f"{key}.{field}" for key, field in self.queued]


def two_reads(key: str) -> Plan[list[str]]:
    first = yield Command("hget", key, "a")
    rest = yield Batch([Command("hget", key, "b"), Command("hget", key, "c")])
    return [first, *rest]


def test_a_plan_is_sent_its_replies_and_returns_its_result() -> None:
    # Given a plan of one command, then a batch of two
    client = RecordingClient()

    # When it is run on a client
    result = run(client, two_reads("k"))  # type: ignore[arg-type]

    # Then each step went out in order, the batch in one round trip, and the replies came back
    assert result == ["k.a", "k.b", "k.c"]
    assert client.sent == [("hget", ("k", "a")), ("pipeline", (("k", "b"), ("k", "c")))]


def test_a_streamed_plan_hands_over_what_it_emits_as_it_goes() -> None:
    # Given a plan that emits a value between two reads
    def emitting() -> Plan[None]:
        value = yield Command("hget", "k", "a")
        yield Emit(value)
        yield Emit((yield Command("hget", "k", "b")))

    client = RecordingClient()

    # When it is streamed, each value is there before the next read
    values = stream(client, emitting())  # type: ignore[arg-type]
    assert next(values) == "k.a" and len(client.sent) == 1

    # Then the rest follows
    assert list(values) == ["k.b"] and len(client.sent) == 2


def test_an_error_in_a_plan_reaches_the_caller() -> None:
    # Given a plan that fails after its first reply
    def failing() -> Plan[None]:
        yield Command("hget", "k", "a")
        raise LookupError("no such record")

    # When it runs, then its error is raised
    with pytest.raises(LookupError, match="no such record"):
        run(RecordingClient(), failing())  # type: ignore[arg-type]
