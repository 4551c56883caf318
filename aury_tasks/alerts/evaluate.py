"""Which rules fire and which resolve, given the current readings: a pure function.

An incident starts when a rule's value passes its threshold and stays past it for the rule's
``for_seconds``: one ``firing`` transition. It ends when the value is back: one ``resolved``
transition. Between the two nothing is sent again, whoever evaluates (the incident is kept in
Redis, so a new leader knows it). ``misfires`` counts ticks missed since the previous
evaluation; its incident resolves once no tick was missed for the rule's ``window``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from ..config.alert_rules import AlertRule

State = Literal["firing", "resolved"]


@dataclass(frozen=True)
class Incident:
    """What is known of one rule between evaluations."""

    #: Since when (UNIX time) the value is past the threshold, if it is.
    breached_since: float | None = None
    #: Since when the incident fired (was notified), if it is firing.
    firing_since: float | None = None
    #: ``misfires``: the miss count seen last, and when it last grew.
    counter: float | None = None
    last_increase: float | None = None

    @property
    def firing(self) -> bool:
        """Whether an incident of the rule is open (notified, not yet resolved)."""
        return self.firing_since is not None

    def to_json(self) -> str:
        """The incident as JSON (for Redis)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Incident:
        """Read :meth:`to_json`; anything unreadable is a fresh incident."""
        try:
            data = json.loads(text)
            return cls(**{key: data.get(key) for key in cls.__dataclass_fields__})
        except (ValueError, TypeError, AttributeError):
            return cls()


@dataclass(frozen=True)
class Transition:
    """A rule that fired or resolved at this evaluation."""

    rule: AlertRule
    state: State
    value: float
    since: float
    at: float

    def payload(self) -> dict[str, Any]:
        """The webhook body: ``{rule, kind, target, state, value, threshold, since, at}``."""
        return {"rule": self.rule.name, "kind": self.rule.kind, "target": self.rule.target,
                "state": self.state, "value": self.value, "threshold": self.rule.threshold,
                "since": self.since, "at": self.at}  # fmt: skip


def evaluate(
    rules: Iterable[AlertRule],
    readings: Mapping[str, float | None],
    incidents: Mapping[str, Incident],
    now: float,
) -> tuple[dict[str, Incident], list[Transition]]:
    """Apply ``readings`` (rule name -> value; ``None``: could not be read) to the incidents.

    Returns:
      tuple: the incidents of every rule after this evaluation, and the transitions to deliver.
    """
    updated: dict[str, Incident] = {}
    transitions: list[Transition] = []
    for rule in rules:
        incident = incidents.get(rule.name, Incident())
        value = readings.get(rule.name)
        if value is None:  # nothing known: nothing changes
            updated[rule.name] = incident
            continue
        incident, transition = _step(rule, incident, float(value), now)
        updated[rule.name] = incident
        if transition is not None:
            transitions.append(transition)
    return updated, transitions


def _step(
    rule: AlertRule, incident: Incident, value: float, now: float
) -> tuple[Incident, Transition | None]:
    if rule.kind == "misfires":
        return _step_misfires(rule, incident, value, now)
    if not rule.breached(value):
        if incident.firing:
            since = incident.firing_since or now
            return Incident(), Transition(rule, "resolved", value, since, now)
        return Incident(), None
    breached_since = incident.breached_since if incident.breached_since is not None else now
    incident = replace(incident, breached_since=breached_since)
    if not incident.firing and now - breached_since >= rule.for_seconds:
        return replace(incident, firing_since=now), Transition(rule, "firing", value, breached_since, now)
    return incident, None


def _step_misfires(
    rule: AlertRule, incident: Incident, total: float, now: float
) -> tuple[Incident, Transition | None]:
    if incident.counter is None:  # first sight: the misses before are history, not an incident
        return replace(incident, counter=total), None
    new = max(0.0, total - incident.counter)
    incident = replace(incident, counter=total)
    if rule.breached(new):
        incident = replace(incident, last_increase=now)
        if not incident.firing:
            opened = replace(incident, firing_since=now, breached_since=now)
            return opened, Transition(rule, "firing", new, now, now)
        return incident, None
    quiet_since = incident.last_increase or 0.0
    if incident.firing and now - quiet_since >= rule.window:
        since = incident.firing_since or now
        cleared = Incident(counter=total)
        return cleared, Transition(rule, "resolved", new, since, now)
    return incident, None
