"""The hand-written EVALSHA packer sends exactly what redis-py would."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.connection import Connection

from aury_tasks.redis.scripts import LuaScript, Write, _pack_call

SCRIPT = LuaScript("return 1")


@pytest.mark.parametrize(
    ("keys", "args"),
    [
        ([], []),
        (["queue"], ["text", b"bytes", 0, -7, 2**40, 1.5, "ünïcode", b"\x00\xff", ""]),
        ([b"k1", "k2", "k3"], [b"x" * 5000]),
    ],
)
def test_a_call_is_packed_as_redis_py_packs_it(keys: list[Any], args: list[Any]) -> None:
    expected = b"".join(Connection().pack_command("EVALSHA", SCRIPT.sha, len(keys), *keys, *args))
    assert _pack_call(Write(SCRIPT, keys, args)) == expected


@pytest.mark.parametrize("value", [None, True, {"a": 1}, [1]])
def test_a_value_redis_cannot_take_is_refused(value: object) -> None:
    with pytest.raises(redis.DataError):
        _pack_call(Write(SCRIPT, ["k"], [value]))
