"""Sentinel URLs: what the settings accept and refuse, what they are read as, the clients they give."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio.sentinel
import redis.sentinel

from aury_tasks import ConfigError, TaskSettings
from aury_tasks.core.sentinel_url import SentinelURL, is_sentinel_url, parse_sentinel_url
from aury_tasks.redis.connect import asyncio_client, sync_client, use_sentinel_password


@pytest.fixture(autouse=True)
def _no_sentinel_password() -> Iterator[None]:
    yield
    use_sentinel_password(None)


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database() -> None:
    # When a full sentinel URL is read
    target = parse_sentinel_url("redis+sentinel://:hunter2@s1:26379,s2:26380,[::1]:26381/mymaster/3")

    # Then it gives every sentinel in order, the master's name, the database and the password
    assert target == SentinelURL(
        sentinels=(("s1", 26379), ("s2", 26380), ("::1", 26381)), master_name="mymaster", db=3,
        password="hunter2",
    )  # fmt: skip
    assert "hunter2" not in repr(target)


def test_the_port_and_the_database_have_defaults_and_rediss_means_tls() -> None:
    target = parse_sentinel_url("rediss+sentinel://app:pw@s1,s2/mymaster")
    assert target.sentinels == (("s1", 26379), ("s2", 26379))
    assert (target.db, target.tls, target.username, target.password) == (0, True, "app", "pw")


def test_only_sentinel_schemes_are_sentinel_urls() -> None:
    assert is_sentinel_url("redis+sentinel://s1/m") and is_sentinel_url("REDISS+SENTINEL://s1/m")
    assert not is_sentinel_url("redis://cache:6379/0") and not is_sentinel_url("unix:///r.sock")


@pytest.mark.parametrize("variable", ["TASK_BROKER_URL", "TASK_RESULT_BACKEND_URL"])
def test_the_settings_accept_a_sentinel_url(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "redis+sentinel://:pw@s1:26379,s2:26379,s3:26379/mymaster/0")
    monkeypatch.setenv("TASK_SENTINEL_PASSWORD", "sentinel-secret")
    settings = TaskSettings.load(_env_file=None)
    assert settings.sentinel_password_value == "sentinel-secret"
    assert "sentinel-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("url", "wrong"),
    [
        ("redis+sentinel://:hunter2@s1:26379", "no master name"),
        ("redis+sentinel://:hunter2@s1:26379/", "no master name"),
        ("redis+sentinel://:hunter2@s1:26379,s2:port/mymaster/0", "invalid port"),
        ("redis+sentinel://:hunter2@s1:70000/mymaster/0", "invalid port"),
        ("redis+sentinel://:hunter2@s1,,s2/mymaster/0", "a sentinel without a host"),
        ("redis+sentinel://:hunter2@/mymaster/0", "a sentinel without a host"),
        ("rediss+sentinel://:hunter2@s1/mymaster/zero", "database 'zero' is not a number"),
        ("redis+sentinel://:hunter2@s1/mymaster/0/extra", "expected /MASTER_NAME/DB"),
    ],
)
def test_a_malformed_sentinel_url_is_refused_in_one_line_without_its_password(
    monkeypatch: pytest.MonkeyPatch, url: str, wrong: str
) -> None:
    # Given a sentinel URL with something wrong in it
    monkeypatch.setenv("TASK_BROKER_URL", url)

    # When the settings are read
    with pytest.raises(ConfigError) as caught:
        TaskSettings.load(_env_file=None)

    # Then one line names the variable, the form expected and what is wrong, with the password masked
    message = caught.value.message
    assert message.startswith("invalid setting TASK_BROKER_URL: expected redis+sentinel://")
    assert wrong in message and "\n" not in message
    assert "hunter2" not in message and ":***@" in message
    assert caught.value.exit_code == 2


def test_a_sync_client_of_a_sentinel_url_follows_the_master_it_names() -> None:
    # Given the sentinels' own password
    use_sentinel_password("sentinel-secret")

    # When a client is built for a sentinel URL (nothing is connected yet)
    client = sync_client("redis+sentinel://:pw@s1:26379,s2:26380/mymaster/2", decode_responses=True)

    # Then its pool asks those sentinels, with their password, for that master, and logs in with the URL's
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert pool.service_name == "mymaster" and pool.is_master
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "pw"
    assert pool.connection_kwargs["decode_responses"] is True
    sentinels = pool.sentinel_manager.sentinels
    assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26380]
    assert {s.connection_pool.connection_kwargs["password"] for s in sentinels} == {"sentinel-secret"}


def test_an_asyncio_client_of_a_sentinel_url_follows_the_master_it_names() -> None:
    client = asyncio_client("rediss+sentinel://s1/mymaster", decode_responses=True)
    pool = client.connection_pool
    assert isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_class is redis.asyncio.sentinel.SentinelManagedSSLConnection


def test_a_plain_url_gives_a_client_of_that_server() -> None:
    client = sync_client("redis://:pw@cache:6380/1")
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == ("cache", 6380, 1, "pw")
