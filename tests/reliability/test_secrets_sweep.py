"""The secrets sweep every scenario ends with finds a planted password: it is a check that can fail."""

from __future__ import annotations

import redis

from .conftest import SecretsSweep, _keys_holding


def test_the_sweep_finds_the_password_in_redis_values_keys_and_texts(
    client: redis.Redis, password: str
) -> None:
    # Given the password written in a hash value, in a key's name, and bytes that are not UTF-8
    client.hset("rec:1", mapping={"error": f"could not reach redis://:{password}@db:6379"})
    client.rpush(f"list-{password}", "x")
    client.set("binary", b"\xff\xfe not text")
    client.zadd("plain", {"nothing here": 1})

    # When the sweep reads Redis, and a log line and an error message
    sweep = SecretsSweep(password)
    sweep.log_lines.append(f"connecting with {password}")
    sweep.keep("an error without it")
    found = sweep.leaks([], client)

    # Then it names each place, and nothing else
    assert sorted(_keys_holding(client, password)) == ["list-" + password, "rec:1"]
    assert len(found) == 3
    assert any(line.startswith("log line") for line in found)
