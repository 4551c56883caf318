"""Flow-control options: rate parsing, unique-send digests, deferral delays, and no Redis to share them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.broker import MessageProxy
from loguru import logger

from aury_tasks import LedgerUnavailable, TaskManager, TaskOptionError
from aury_tasks.middleware import flow_control
from aury_tasks.middleware.context import context_of
from aury_tasks.middleware.flow_control import _concurrency_delay, _QuietDeferrals, _rate_delay, admitted_at
from aury_tasks.middleware.limits import RateLimit, Uniqueness, WindowLimiter, parse_rate_limit

# Rates


@pytest.mark.parametrize(
    ("text", "limit", "window"),
    [
        ("5/s", 5, 1),
        ("10/m", 10, 60),
        ("100/h", 100, 3600),
        ("1000/d", 1000, 86400),
        ("3/10s", 3, 10),
        (" 7 / 2 min ", 7, 120),
        ("2/hours", 2, 3600),
        ("1/Second", 1, 1),
    ],
)
def test_rates_read_as_runs_per_window(text: str, limit: int, window: int) -> None:
    assert parse_rate_limit("t", text) == RateLimit(limit, window)


@pytest.mark.parametrize("text", ["ten/m", "5", "5/w", "0/s", "5/0s", "", 5, None])
def test_a_text_that_is_not_a_rate_is_refused_naming_the_task(text: Any) -> None:
    with pytest.raises(TaskOptionError, match=r"^jobs\.send: rate_limit must"):
        parse_rate_limit("jobs.send", text)


def test_a_rate_reads_back_and_converts() -> None:
    assert str(RateLimit(3, 10)) == "3/10s"
    assert RateLimit(10, 60).per_second == pytest.approx(1 / 6)


@pytest.mark.parametrize(
    ("rate", "bucket_seconds", "buckets"),
    [("5/s", 1, 1), ("10/m", 1, 60), ("3/90s", 2, 45), ("100/h", 60, 60), ("1000/d", 1440, 60)],
)
def test_a_long_window_is_counted_in_at_most_60_buckets(rate: str, bucket_seconds: int, buckets: int) -> None:
    # Given a limiter (no command is sent: a client connects on first use)
    limiter = WindowLimiter(redis.Redis(), "k", parse_rate_limit("t", rate))

    # Then its buckets cover the window, at most 60 of them
    assert (limiter.bucket_seconds, limiter.buckets) == (bucket_seconds, buckets)
    assert len(limiter.bucket_keys()) == buckets
    assert limiter.window_millis >= limiter.window * 1000


# Declaring


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"rate_limit": "fast"}, "rate_limit must look like"),
        ({"concurrency": 0}, "concurrency is an integer of 1 or more"),
        ({"concurrency": True}, "concurrency is an integer of 1 or more"),
        ({"unique_for": 0}, "unique_for is a number of seconds above 0"),
        ({"unique_key": ["x"]}, "unique_key needs unique_for"),
        ({"unique_for": 60, "unique_key": ["nope"]}, "unique_key names no parameter nope"),
        ({"unique_for": 60, "unique_key": "x"}, "unique_key is a list of argument names or a function"),
    ],
)
def test_bad_flow_control_options_fail_at_declaration(options: dict[str, Any], error: str) -> None:
    tm = TaskManager.get_instance()
    with pytest.raises(TaskOptionError, match=error):

        @tm.conditional_task(**options)
        def job(x: int) -> None: ...


# Unique sends


def _report(account: str, day: str = "today", *, verbose: bool = False) -> None: ...


def test_the_same_arguments_spelt_differently_digest_alike() -> None:
    # Given a unique task over all its arguments
    unique = Uniqueness.declare("t", _report, 60, None)

    # Then positional, keyword and defaulted spellings of one call are one send
    same = {
        unique.digest(("acme",), {}),
        unique.digest(("acme", "today"), {}),
        unique.digest((), {"account": "acme"}),
        unique.digest(["acme"], {"verbose": False}),
    }
    assert len(same) == 1
    # ... and other values are other sends
    others = {unique.digest(("globex",), {}), unique.digest(("acme", "tomorrow"), {})}
    assert len(others | same) == 3


def test_a_unique_key_of_names_ignores_the_other_arguments() -> None:
    unique = Uniqueness.declare("t", _report, 60, ["account"])
    assert unique.digest(("acme", "today"), {}) == unique.digest(("acme",), {"day": "yesterday"})
    assert unique.digest(("acme",), {}) != unique.digest(("globex",), {})


def test_a_unique_key_function_decides_alone() -> None:
    unique = Uniqueness.declare("t", _report, 60, lambda account, **_: account.lower())
    assert unique.digest(("ACME",), {}) == unique.digest(("acme",), {"day": "other"})


def test_arguments_that_do_not_fit_the_function_still_digest() -> None:
    # The send fails in the worker; the digest must not fail first
    unique = Uniqueness.declare("t", _report, 60, None)
    assert unique.digest(("a", "b", "c"), {"nope": 1}) != unique.digest(("a",), {})


def test_arguments_json_cannot_sort_or_hold_still_digest() -> None:
    unique = Uniqueness.declare("t", _report, 60, None)
    assert unique.digest(({1: "a", "b": 2},), {}) != unique.digest(({2: "a", "b": 2},), {})
    deep: list[Any] = []
    for _ in range(10_000):
        deep = [deep]
    assert len(unique.digest((deep,), {})) == 32


def test_unique_sends_need_the_ledger(memory_tm: TaskManager) -> None:
    # Given a unique task on a broker that keeps no task state
    @memory_tm.conditional_task(unique_for=60)
    def job(x: int) -> None: ...

    # When it is sent, Then the error says why it cannot be
    with pytest.raises(LedgerUnavailable, match="job is declared with unique_for, which needs task state"):
        job.send(1)


def test_unique_tasks_run_inline_in_eager_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given eager mode (no broker, no ledger)
    monkeypatch.setenv("TASK_RUN_MODE", "eager")
    tm = TaskManager.get_instance()

    @tm.conditional_task(unique_for=60)
    def double(x: int) -> int:
        return 2 * x

    # Then identical sends each run
    assert [double.send(2).eager_result, double.send(2).eager_result] == [4, 4]


# Deferrals


@pytest.mark.parametrize("deferrals", [0, 1, 5, 1000])
def test_a_run_over_its_rate_waits_for_the_next_bucket_then_a_spread_that_grows(deferrals: int) -> None:
    # Given 5 runs a second, 0.3 s before the current second ends
    rate = RateLimit(5, 1)
    spread = min(flow_control.MAX_DEFER_SECONDS, 0.2 * (1 + deferrals))

    # Then a deferral ends in the next second, within the spread, and never over a minute
    delays = [_rate_delay(rate, 0.3, deferrals) for _ in range(500)]
    assert all(0.3 <= delay <= min(0.3 + spread, flow_control.MAX_DEFER_SECONDS) for delay in delays)


def test_a_rate_deferral_is_never_longer_than_a_minute() -> None:
    assert _rate_delay(RateLimit(1, 86400), 1000.0, 0) == flow_control.MAX_DEFER_SECONDS


@pytest.mark.parametrize(("deferrals", "low", "high"), [(0, 0.5, 1.0), (2, 1.0, 2.0), (1000, 2.5, 5.0)])
def test_a_run_over_its_concurrency_waits_half_a_second_at_first_then_longer(
    deferrals: int, low: float, high: float
) -> None:
    delays = [_concurrency_delay(deferrals) for _ in range(500)]
    assert all(low <= delay <= high for delay in delays)


def test_dramatiqs_skip_warning_is_dropped_for_deferred_messages_only() -> None:
    # Given two skipped messages, one of them deferred
    deferred, cancelled = _proxy(), _proxy()
    context_of(deferred).deferred = True

    def record_of(message: object) -> logging.LogRecord:
        return logging.LogRecord("w", logging.WARNING, "", 0, "Message %s was skipped.", (message,), None)

    # Then only the deferral's warning is dropped
    quiet = _QuietDeferrals()
    assert quiet.filter(record_of(deferred)) is False
    assert quiet.filter(record_of(cancelled)) is True
    assert quiet.filter(logging.LogRecord("dramatiq", logging.INFO, "", 0, "no args", None, None)) is True


def _proxy() -> MessageProxy:
    return MessageProxy(dramatiq.Message("q", "a", (), {}, {}))


# Without Redis


def test_without_redis_limited_tasks_run_unlimited_and_say_so_once(
    worker_tm: TaskManager, stub_worker: Callable[[], dramatiq.Worker]
) -> None:
    # Given limited tasks on the in-memory broker (no Redis to share limits in)
    ran: list[int] = []
    admitted: list[float | None] = []
    lock = threading.Lock()

    @worker_tm.conditional_task(queue_name="limited", concurrency=1, rate_limit="1/m", max_retries=0)
    def limited(n: int) -> None:
        with lock:
            ran.append(n)
            admitted.append(admitted_at())

    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    try:
        # When three are sent and a worker runs them
        for n in range(3):
            limited.send(n)
        worker = stub_worker()
        worker_tm.broker.join("limited", timeout=10_000)  # type: ignore[attr-defined]
        worker.join()
    finally:
        logger.remove(sink)

    # Then all ran, not let through by any limit, and the worker said once that none is applied
    assert sorted(ran) == [0, 1, 2]
    assert admitted == [None, None, None]
    assert admitted_at() is None
    said = [line for line in warnings if "no Redis to share it in" in line]
    assert len(said) == 1 and limited.name in said[0]
