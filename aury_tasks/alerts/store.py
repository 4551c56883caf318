"""Alert rules and their incidents in Redis: rules as JSON in a hash, one incident per rule."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import redis
from loguru import logger

from ..config.alert_rules import AlertRule
from ..core.errors import ConfigError
from ..core.keys import KeySpace
from .evaluate import Incident


class AlertStore:
    """The stored rules (``aum alerts add``) and every rule's incident, in one Redis.

    Parameters:
      client: a ``decode_responses=True`` client.
      keys: the keys the rules and incidents live under (the scheduler's store's).
    """

    def __init__(self, client: redis.Redis, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys

    # Rules

    def put(self, rule: AlertRule) -> None:
        """Create or replace ``rule``."""
        self.client.hset(self.keys.alert_rules(), rule.name, rule.to_json())

    def remove(self, name: str) -> bool:
        """Delete the rule and its incident; return whether the rule existed."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.keys.alert_rules(), name)
        pipe.hdel(self.keys.alert_incidents(), name)
        removed, _ = pipe.execute()
        return bool(removed)

    def rules(self) -> list[AlertRule]:
        """The stored rules, by name; one that cannot be read is left out with a warning."""
        found: list[AlertRule] = []
        stored: Any = self.client.hgetall(self.keys.alert_rules())
        for name, text in sorted(stored.items()):
            try:
                found.append(AlertRule.from_json(text))
            except ConfigError as exc:
                logger.warning("alert rule {!r} in Redis cannot be read, left out: {}", name, exc)
        return found

    # Incidents

    def incidents(self) -> dict[str, Incident]:
        """Every rule's incident, by rule name."""
        stored: Any = self.client.hgetall(self.keys.alert_incidents())
        return {name: Incident.from_json(text) for name, text in stored.items()}

    def save_incidents(self, incidents: Mapping[str, Incident], keep: Iterable[str]) -> None:
        """Write ``incidents`` and drop those of rules not in ``keep`` (one round trip)."""
        kept = set(keep)
        pipe = self.client.pipeline(transaction=True)
        pipe.hkeys(self.keys.alert_incidents())
        if incidents:
            pipe.hset(
                self.keys.alert_incidents(), mapping={name: i.to_json() for name, i in incidents.items()}
            )
        names = pipe.execute()[0]
        gone = [name for name in names if name not in kept]
        if gone:
            self.client.hdel(self.keys.alert_incidents(), *gone)


def merge_rules(configured: Iterable[AlertRule], stored: Iterable[AlertRule]) -> list[AlertRule]:
    """The rules in effect: those of ``TASK_ALERT_RULES`` and the stored ones (a setting wins a name)."""
    merged = {rule.name: rule for rule in stored}
    merged.update({rule.name: rule for rule in configured})
    return [merged[name] for name in sorted(merged)]
