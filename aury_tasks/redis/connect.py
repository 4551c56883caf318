"""Redis clients from a URL, sync and asyncio: every client the toolkit opens is built here.

A ``redis://``, ``rediss://`` or ``unix://`` URL gives a client of that server. A
``redis+sentinel://`` or ``rediss+sentinel://`` URL (:mod:`aury_tasks.core.sentinel_url`) gives a
client of the master the sentinels name (redis-py's ``Sentinel.master_for``): its connections
ask the sentinels where the master is, and follow it when a failover moves it.

The sentinels' own password (``TASK_SENTINEL_PASSWORD``) is set once for the process with
:func:`use_sentinel_password` (opening the broker does), so that a client built from a URL alone
(the ledger's asyncio clients) reaches sentinels that require one.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from ..core.sentinel_url import SentinelURL, is_sentinel_url, parse_sentinel_url

#: Seconds to wait for a sentinel to answer before asking the next one.
SENTINEL_TIMEOUT = 1.0

_sentinel_password: list[str | None] = [None]


def use_sentinel_password(password: str | None) -> None:
    """The password the sentinels ask for, for every sentinel client this process builds."""
    _sentinel_password[0] = password


def sentinel_password() -> str | None:
    """The password set by :func:`use_sentinel_password` (``None``: the sentinels ask for none)."""
    return _sentinel_password[0]


def sync_client(url: str, **options: Any) -> redis.Redis:
    """A client for ``url``; ``options`` are redis-py's (``decode_responses``, ``retry`` ...).

    Raises:
      ValueError: for a malformed sentinel URL (the settings reject it first).
    """
    if not is_sentinel_url(url):
        return redis.Redis(connection_pool=redis.ConnectionPool.from_url(url, **options))
    target = parse_sentinel_url(url)
    sentinel = redis.sentinel.Sentinel(list(target.sentinels), sentinel_kwargs=_sentinel_options())
    return sentinel.master_for(target.master_name, **_master_options(target), **options)


def asyncio_client(url: str, **options: Any) -> redis.asyncio.Redis:
    """:func:`sync_client` for asyncio."""
    if not is_sentinel_url(url):
        return redis.asyncio.Redis.from_url(url, **options)
    target = parse_sentinel_url(url)
    sentinel = redis.asyncio.sentinel.Sentinel(list(target.sentinels), sentinel_kwargs=_sentinel_options())
    return sentinel.master_for(target.master_name, **_master_options(target), **options)


def _sentinel_options() -> dict[str, Any]:
    password = _sentinel_password[0]
    return {"socket_timeout": SENTINEL_TIMEOUT, **({"password": password} if password else {})}


def _master_options(target: SentinelURL) -> dict[str, Any]:
    options: dict[str, Any] = {"db": target.db}
    if target.username:
        options["username"] = target.username
    if target.password is not None:
        options["password"] = target.password
    if target.tls:
        options["ssl"] = True
    return options
