"""What the sentinels of a ``redis+sentinel://`` URL say of its master, for ``aum doctor``.

Each sentinel of the URL is asked on its own (``SENTINEL MASTERS``, ``SENTINEL REPLICAS``,
``SENTINEL SENTINELS``), so that the report shows how many of them agree on where the master is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import redis

from ..core.sentinel_url import parse_sentinel_url
from .connect import SENTINEL_TIMEOUT, sentinel_password


@dataclass(frozen=True)
class SentinelView:
    """The master the most sentinels name, its replicas, and how many sentinels agree."""

    master_name: str
    #: ``host:port`` of the master the most sentinels name, or ``None`` when none answered.
    master: str | None
    #: ``host:port`` of its replicas, as the first agreeing sentinel lists them.
    replicas: tuple[str, ...]
    #: The sentinels of the URL that name that master.
    agreeing: int
    #: The sentinels in the URL.
    listed: int
    #: The sentinels the first agreeing sentinel knows of, itself included.
    known: int
    #: The votes a failover needs, as the sentinels are configured.
    quorum: int | None


def view_sentinels(url: str) -> SentinelView:
    """Ask every sentinel of ``url`` about its master (one that does not answer counts as disagreeing)."""
    target = parse_sentinel_url(url)
    answers: list[tuple[str, tuple[str, ...], int, int | None]] = []
    for host, port in target.sentinels:
        client = redis.Redis(
            host=host, port=port, password=sentinel_password(), decode_responses=True,
            socket_timeout=SENTINEL_TIMEOUT, socket_connect_timeout=SENTINEL_TIMEOUT,
        )  # fmt: skip
        try:
            answers.append(_ask(client, target.master_name))
        except redis.RedisError:
            continue
        finally:
            client.close()
    votes = Counter(master for master, *_ in answers)
    if not votes:
        return SentinelView(target.master_name, None, (), 0, len(target.sentinels), 0, None)
    master, agreeing = votes.most_common(1)[0]
    _, replicas, known, quorum = next(answer for answer in answers if answer[0] == master)
    return SentinelView(target.master_name, master, replicas, agreeing, len(target.sentinels), known, quorum)


def _ask(client: redis.Redis, name: str) -> tuple[str, tuple[str, ...], int, int | None]:
    masters = {m["name"]: m for m in client.execute_command("SENTINEL", "MASTERS")}
    master = masters.get(name)
    if master is None:
        raise redis.ResponseError(f"no master {name!r}")
    replicas = client.execute_command("SENTINEL", "REPLICAS", name)
    others = client.execute_command("SENTINEL", "SENTINELS", name)
    listed = tuple(f"{r['ip']}:{r['port']}" for r in replicas if "s_down" not in r["flags"])
    quorum = int(master["quorum"]) if "quorum" in master else None
    return f"{master['ip']}:{master['port']}", listed, len(others) + 1, quorum
