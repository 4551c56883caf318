"""The Redis server's clock as a process reads it: its own clock plus the offset ``TIME`` showed."""

from __future__ import annotations

import pytest
import redis

from aury_tasks.redis.clock import ServerClock


class Server:
    """What the clock asks of Redis (``TIME``), on a clock set by hand; ``down``: unreachable."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.down = False
        self.asked = 0

    def time(self) -> tuple[int, int]:
        self.asked += 1
        if self.down:
            raise redis.ConnectionError("unreachable")
        return int(self.now), round(self.now % 1 * 1_000_000)


class Local:
    """This process's wall clock, set by hand; each reading moves it on by ``step`` seconds."""

    def __init__(self, now: float, step: float = 0.0) -> None:
        self.now = now
        self.step = step

    def __call__(self) -> float:
        reading = self.now
        self.now += self.step
        return reading


def test_the_server_s_time_is_the_local_clock_plus_the_offset_measured() -> None:
    # Given a host 30 s ahead of the Redis server
    server, local = Server(1_000.0), Local(1_030.0)
    clock = ServerClock(server, local=local)

    # Then the clock reads the server's time, and maps a server time to this host's clock
    assert clock.offset == pytest.approx(-30.0)
    assert clock.millis() == 1_000_000
    local.now = 1_040.0
    assert clock.time() == pytest.approx(1_010.0)
    assert clock.local_millis(1_020_000) == 1_050_000
    # ... with one TIME only: the offset is kept until the next measurement is due
    assert server.asked == 1


def test_the_offset_counts_half_the_round_trip() -> None:
    # Given a TIME whose round trip took 0.2 s by the local clock (read before and after it)
    server, local = Server(500.1), Local(500.0, step=0.2)
    clock = ServerClock(server, local=local)

    # Then the server's answer is taken as of the middle of the round trip
    assert clock.offset == pytest.approx(0.0, abs=1e-6)


def test_while_the_server_cannot_be_reached_the_last_offset_is_kept() -> None:
    # Given a clock that measured an offset of +5 s, re-measured at every reading
    server, local = Server(105.0), Local(100.0)
    clock = ServerClock(server, every=0.0, local=local)
    assert clock.offset == pytest.approx(5.0)

    # When the server goes away
    server.down = True

    # Then the next measurement fails, and the offset measured before stays
    assert clock.measure() is False
    assert clock.offset == pytest.approx(5.0)
    assert clock.measured


def test_before_any_measurement_succeeded_the_local_clock_is_used() -> None:
    server = Server(100.0)
    server.down = True
    clock = ServerClock(server, local=Local(130.0))

    assert clock.millis() == 130_000
    assert not clock.measured
