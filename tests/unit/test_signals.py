"""Brokers send each middleware signal only to the middleware that handle it, as Dramatiq would."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, SkipMessage

from aury_tasks.broker.redis.signals import HandledSignals


class Broker(HandledSignals, StubBroker):
    pass


class Recorder(Middleware):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        self.calls.append(f"before {self.name} {message}")

    def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        self.calls.append(f"after {self.name} {message}")


class Silent(Middleware):
    """Handles nothing: every hook is the base class's."""


def _broker(*middleware: Middleware) -> Broker:
    return Broker(middleware=list(middleware))


def test_hooks_run_in_dramatiqs_order_and_the_others_are_skipped() -> None:
    calls: list[str] = []
    broker = _broker(Recorder("a", calls), Silent(), Recorder("b", calls))

    broker.emit_before("enqueue", "m", None)
    broker.emit_after("enqueue", "m", None)

    assert calls == ["before a m", "before b m", "after b m", "after a m"]
    assert len(broker._handlers("before_enqueue")) == 2
    assert broker._handlers("before_ack") == ()


def test_middleware_added_later_gets_the_signals_already_sent() -> None:
    calls: list[str] = []
    broker = _broker(Recorder("a", calls))
    broker.emit_before("enqueue", "1", None)

    broker.add_middleware(Recorder("b", calls))
    broker.emit_before("enqueue", "2", None)

    assert calls == ["before a 1", "before a 2", "before b 2"]


def test_a_hook_set_on_an_instance_is_called() -> None:
    calls: list[str] = []
    silent = Silent()
    silent.before_enqueue = lambda broker, message, delay: calls.append(f"instance {message}")  # type: ignore[method-assign]
    broker = _broker(silent)

    broker.emit_before("enqueue", "m", None)

    assert calls == ["instance m"]


def test_a_failing_hook_is_logged_and_the_next_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    class Failing(Middleware):
        def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
            raise RuntimeError("boom")

    broker = _broker(Recorder("a", calls), Failing())
    with caplog.at_level(logging.CRITICAL):
        broker.emit_after("enqueue", "m", None)

    assert calls == ["after a m"]
    assert "Unexpected failure in after_enqueue" in caplog.text


def test_a_middleware_error_of_a_before_hook_stops_the_signal() -> None:
    calls: list[str] = []

    class Skipping(Middleware):
        def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
            raise SkipMessage("no")

    broker = _broker(Skipping(), Recorder("a", calls))
    with pytest.raises(SkipMessage):
        broker.emit_before("enqueue", "m", None)
    assert calls == []
