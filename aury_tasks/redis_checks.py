"""What is risky about the Redis a worker talks to, said once at start: a sentence per risk.

Messages live in Redis until they are acknowledged, so a server that may lose or evict data may
lose tasks, and one reached without a password or TLS over a network may be read or written by
others. None of this stops a worker (development setups are often like that); it is said once,
at ``aum worker``/``aum run`` start, with what to change.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import redis

#: Host names that are this machine.
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def redis_warnings(client: redis.Redis, *, role: str = "broker") -> list[str]:
    """Every warning about ``client``'s server and connection (``role`` names it in the text).

    Reading the server's configuration needs ``CONFIG GET``; where it is refused (managed
    services, restricted ACL users), persistence and eviction are said to be unchecked.
    """
    return connection_warnings(client, role=role) + server_warnings(client, role=role)


def connection_warnings(client: redis.Redis, *, role: str = "broker") -> list[str]:
    """Warnings about how ``client`` connects: no TLS, or no password, across a network."""
    pool = client.connection_pool
    kwargs: dict[str, Any] = pool.connection_kwargs
    if "path" in kwargs or is_loopback(str(kwargs.get("host", "localhost"))):
        return []
    where = f"{kwargs.get('host')}:{kwargs.get('port', 6379)}"
    warnings = []
    if not issubclass(pool.connection_class, redis.SSLConnection):
        warnings.append(
            f"the {role} Redis at {where} is reached without TLS: messages and results cross the"
            " network in clear text; use a rediss:// URL"
        )
    if not kwargs.get("password") and kwargs.get("username") in (None, "", "default"):
        warnings.append(
            f"the {role} Redis at {where} is reached as the default user without a password: anyone"
            " who reaches it can read and change the queues; set a password or an ACL user in the URL"
        )
    return warnings


def server_warnings(client: redis.Redis, *, role: str = "broker") -> list[str]:
    """Warnings about the server's own settings: persistence off, eviction on."""
    try:
        appendonly = _config(client, "appendonly")
        policy = _config(client, "maxmemory-policy")
    except redis.ResponseError:
        return [
            f"the {role} Redis refuses CONFIG GET: whether it persists messages (appendonly yes)"
            " and never evicts them (maxmemory-policy noeviction) is not checked"
        ]
    warnings = []
    if appendonly != "yes":
        warnings.append(
            f"the {role} Redis has appendonly {appendonly}: if it restarts, the messages enqueued"
            " since its last snapshot are lost; set appendonly yes"
        )
    if policy != "noeviction":
        warnings.append(
            f"the {role} Redis has maxmemory-policy {policy}: when memory runs short it deletes"
            " keys, queued messages included; set maxmemory-policy noeviction"
        )
    return warnings


#: The oldest Redis the broker runs on: a fetch pops with ``LPOP key count`` (Redis 6.2).
MIN_REDIS_VERSION = (6, 2)


def too_old(client: redis.Redis) -> str | None:
    """The server's version when it is older than :data:`MIN_REDIS_VERSION`, else ``None``."""
    version = str(client.info("server").get("redis_version", ""))
    try:
        numbers = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return None  # a server that does not say: let it try
    return version if numbers < MIN_REDIS_VERSION else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine."""
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _config(client: redis.Redis, name: str) -> str:
    value: Any = client.config_get(name).get(name, "")
    return value.decode() if isinstance(value, bytes) else str(value)
