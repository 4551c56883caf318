"""What is risky about the Redis a worker talks to, said once at start: a sentence per risk.

Messages live in Redis until they are acknowledged, so a server that may lose or evict data may
lose tasks, and one reached without a password or TLS over a network may be read or written by
others. None of this stops a worker (development setups are often like that); it is said once,
at ``aum worker``/``aum run`` start, with what to change.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import redis

from ...core.keys import DEFAULT, KeySpace

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


_SHA = "0" * 40


def required_commands(keys: KeySpace) -> dict[str, tuple[str, ...]]:
    """Every Redis command aury-tasks runs (its own calls, its Lua scripts and Dramatiq's), with the
    arguments ``ACL DRYRUN`` checks it with: keys under ``keys``' prefix, the channels it uses. A
    script call is checked command by command inside the script, so those commands are listed too.
    The ACL user line of docs/deploy.md grants exactly these (with ``~<prefix>:*``)."""
    key = keys.doctor_probe()
    return {
        # Lua scripts: every hot path is one script call, loaded when the server lacks it
        "EVALSHA": (_SHA, "1", key), "EVAL": ("return 1", "1", key),
        "SCRIPT|LOAD": ("return 1",), "SCRIPT|EXISTS": (_SHA,),
        # strings and keys (SET NX PX claims a scheduler fire; KEYS: Dramatiq's maintenance)
        "GET": (key,), "SET": (key, "1", "NX", "PX", "1000"), "DEL": (key,), "EXISTS": (key,),
        "EXPIRE": (key, "1"), "PEXPIRE": (key, "1"), "PTTL": (key,), "INCR": (key,),
        "KEYS": (keys.broker_fetched_prefix() + "*",),
        # hashes: task records, messages, workers, scheduled jobs
        "HSET": (key, "f", "v"), "HSETNX": (key, "f", "v"), "HGET": (key, "f"), "HMGET": (key, "f"),
        "HGETALL": (key,), "HDEL": (key, "f"), "HEXISTS": (key, "f"), "HKEYS": (key,), "HLEN": (key,),
        "HINCRBY": (key, "f", "1"),
        # lists: the queues
        "LPUSH": (key, "v"), "RPUSH": (key, "v"), "LPOP": (key, "1"), "LLEN": (key,),
        # sets
        "SADD": (key, "m"), "SREM": (key, "m"), "SMEMBERS": (key,), "SCARD": (key,),
        # sorted sets: delays, indexes, heartbeats, priorities
        "ZADD": (key, "1", "m"), "ZREM": (key, "m"), "ZCARD": (key,), "ZCOUNT": (key, "0", "1"),
        "ZSCORE": (key, "m"), "ZPOPMIN": (key,), "ZRANGE": (key, "0", "1"),
        "ZRANGEBYSCORE": (key, "0", "1"), "ZREVRANGEBYSCORE": (key, "1", "0"), "ZREVRANGE": (key, "0", "1"),
        "ZREMRANGEBYSCORE": (key, "0", "1"),
        # pub/sub: progress events, cancels, schedule changes, waking idle consumers
        "PUBLISH": (keys.cancel_channel(), "m"), "SUBSCRIBE": (keys.cancel_channel(),),
        "PSUBSCRIBE": (keys.wake_pattern(),), "UNSUBSCRIBE": (), "PUNSUBSCRIBE": (),
        # transactions (the scheduler's pipelines), connection and server
        "MULTI": (), "EXEC": (), "PING": (), "INFO": ("server",),
    }  # fmt: skip


#: The names of the commands of :func:`required_commands` (the same under every prefix).
REQUIRED_COMMAND_NAMES = frozenset(required_commands(DEFAULT))
#: Commands used when allowed: without them a check is skipped (``CONFIG GET``: persistence and
#: eviction; ``SELECT``: a URL's database other than 0).
OPTIONAL_COMMANDS: dict[str, tuple[str, ...]] = {"CONFIG|GET": ("appendonly",), "SELECT": ("1",)}


def acl_rules(keys: KeySpace) -> str:
    """The rules of an ACL user (``ACL SETUSER``, a ``user`` line of redis.conf) that may run exactly
    what aury-tasks runs (:func:`required_commands` and the optional ones) on the keys and
    channels under ``keys``' prefix, and nothing else: ``resetchannels ~<prefix>:* &<prefix>:*
    &<prefix>:wake:* -@all +evalsha …``. (``PSUBSCRIBE`` needs its pattern granted literally.)"""
    commands = [*required_commands(keys), *OPTIONAL_COMMANDS]
    grants = [f"~{keys.pattern()}", f"&{keys.pattern()}", f"&{keys.wake_pattern()}"]
    return " ".join(["resetchannels", *grants, "-@all", *(f"+{name.lower()}" for name in commands)])


@dataclass(frozen=True)
class AclCheck:
    """What ``ACL DRYRUN`` said of the connected user and the commands aury-tasks needs."""

    #: The user (``ACL WHOAMI``), or ``None`` when the server could not say.
    user: str | None
    #: Required commands the user may not run, with the server's reason.
    refused: dict[str, str] = field(default_factory=dict)
    #: Optional commands the user may not run.
    refused_optional: dict[str, str] = field(default_factory=dict)
    #: Why nothing was checked (an old server, ``ACL DRYRUN`` not allowed), else ``None``.
    skipped: str | None = None


def acl_check(client: redis.Redis, keys: KeySpace, user: str | None = None) -> AclCheck:
    """Ask the server (Redis 7+, Valkey) whether a user may run the commands aury-tasks runs on the
    keys under ``keys``' prefix.

    ``user``: that user rather than the connected one (``ACL WHOAMI``). ``ACL DRYRUN`` is an
    admin command: where it is refused or unknown, ``skipped`` says so (no error is raised).
    """
    if user is None:
        try:
            user = _text(client.execute_command("ACL", "WHOAMI"))
        except redis.ResponseError as exc:
            return AclCheck(None, skipped=f"ACL WHOAMI refused ({exc})")
    try:
        refused = _dry_run(client, user, required_commands(keys))
    except redis.ResponseError as exc:
        return AclCheck(user, skipped=f"ACL DRYRUN refused or unknown ({exc}); needs Redis 7 or Valkey")
    return AclCheck(user, refused, _dry_run(client, user, OPTIONAL_COMMANDS))


def _dry_run(client: redis.Redis, user: str, commands: dict[str, tuple[str, ...]]) -> dict[str, str]:
    refused = {}
    for name, args in commands.items():
        answer = _text(client.execute_command("ACL", "DRYRUN", user, *name.split("|"), *args))
        if answer != "OK":
            refused[name] = answer
    return refused


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
