"""Ledger writes parked for their broker call: taken once, never riding on another message's call."""

from __future__ import annotations

import threading

import redis

from aury_tasks.broker.redis.riders import Riders
from aury_tasks.redis.scripts import LuaScript, Write

NOOP = LuaScript("return 1")


def _riders() -> Riders:
    return Riders(redis.Redis(), riding=True)  # never connects: riding writes are only parked


def test_a_take_drops_the_writes_parked_for_other_messages() -> None:
    riders, first, second = _riders(), Write(NOOP, [], ["a"]), Write(NOOP, [], ["b"])
    riders.add("a", first)
    riders.add("b", second)
    assert riders.take("a") == [first]
    assert riders.take("b") is None  # its send never came: it must not ride on a later call


def test_a_bulk_send_takes_each_message_s_writes_in_turn() -> None:
    riders = _riders()
    writes = {name: Write(NOOP, [], [name]) for name in "abc"}
    for name, write in writes.items():
        riders.add(name, write)
    assert [riders.take(name, keep_others=True) for name in "abc"] == [[w] for w in writes.values()]


def test_drop_forgets_what_this_thread_parked_only() -> None:
    riders = _riders()
    riders.add("mine", Write(NOOP, [], []))
    other: list[object] = []

    def park_and_wait() -> None:
        riders.add("theirs", Write(NOOP, [], []))
        parked.set()
        dropped.wait(5)
        other.append(riders.take("theirs"))

    parked, dropped = threading.Event(), threading.Event()
    thread = threading.Thread(target=park_and_wait)
    thread.start()
    parked.wait(5)
    riders.drop()
    dropped.set()
    thread.join(5)
    assert riders.take("mine") is None
    assert other and other[0] is not None
