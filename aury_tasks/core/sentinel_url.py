"""Redis Sentinel URLs: ``redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTER[/DB]``.

``rediss+sentinel://`` talks TLS to the master and its replicas. The password in the URL is the
master's (and its replicas'); the sentinels' own password is a setting of its own
(``TASK_SENTINEL_PASSWORD``). Read here without redis-py, so that the settings can check a URL;
the clients are built in :mod:`aury_tasks.redis.connect`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

#: The URL schemes of a Redis reached through its sentinels.
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
#: The port of a sentinel written without one.
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelURL:
    """What a sentinel URL says: where the sentinels are, which master, which database."""

    #: The sentinels, ``(host, port)``, in the URL's order.
    sentinels: tuple[tuple[str, int], ...]
    #: The name the sentinels monitor the master under.
    master_name: str
    db: int = 0
    #: TLS to the master and replicas (``rediss+sentinel://``).
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` is a ``redis+sentinel://`` or ``rediss+sentinel://`` URL."""
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def parse_sentinel_url(url: str) -> SentinelURL:
    """Read a sentinel URL.

    Raises:
      ValueError: saying what is wrong, never with the password.
    """
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in SENTINEL_SCHEMES:
        raise ValueError(f"not a sentinel URL (scheme {scheme.lower()!r})")
    authority, _, path = rest.partition("/")
    authority = authority.split("?", 1)[0]
    credentials, _, hosts = authority.rpartition("@")
    username, password = _credentials(credentials)
    parts = path.split("?", 1)[0].split("#", 1)[0].strip("/").split("/")
    if not parts[0]:
        raise ValueError("no master name: expected .../MASTER_NAME/DB after the sentinels")
    if len(parts) > 2:
        raise ValueError("expected /MASTER_NAME/DB after the sentinels")
    db = parts[1] if len(parts) == 2 else "0"
    if not db.isdigit():
        raise ValueError(f"database {db!r} is not a number")
    return SentinelURL(
        sentinels=tuple(_address(host) for host in hosts.split(",")),
        master_name=unquote(parts[0]),
        db=int(db),
        tls=scheme.lower() == "rediss+sentinel",
        username=username,
        password=password,
    )


def _credentials(credentials: str) -> tuple[str | None, str | None]:
    if not credentials:
        return None, None
    user, colon, password = credentials.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _address(host: str) -> tuple[str, int]:
    host = host.strip()
    if not host:
        raise ValueError("a sentinel without a host: expected host:port[,host:port...]")
    name, colon, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not colon:
        name, port = host, str(DEFAULT_SENTINEL_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"sentinel {host!r} has an invalid port")
    if not name:
        raise ValueError(f"sentinel {host!r} has no host")
    return name.strip("[]"), int(port)
