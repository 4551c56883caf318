"""Alert rules: validation, JSON round trip, evaluate() firing once and resolving, the signature."""

from __future__ import annotations

import json

import pytest

from aury_tasks.alerts import AlertRule, Incident, evaluate, parse_rules
from aury_tasks.alerts.deliver import encode, sign, verify
from aury_tasks.alerts.store import merge_rules
from aury_tasks.config.settings import TaskSettings
from aury_tasks.core.errors import ConfigError

BACKLOG = AlertRule(name="emails-backlog", kind="backlog", queue="emails", threshold=100)


def run(rule: AlertRule, values: list[float], *, step: float = 1.0) -> list[tuple[str, float]]:
    """Evaluate ``rule`` once per value, a ``step`` apart; the (state, value) of each transition."""
    incidents: dict[str, Incident] = {}
    seen = []
    for index, value in enumerate(values):
        incidents, transitions = evaluate([rule], {rule.name: value}, incidents, now=1000.0 + index * step)
        seen += [(transition.state, transition.value) for transition in transitions]
    return seen


# Validation


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"name": "x", "kind": "backlog"}, "needs a queue"),
        ({"name": "x", "kind": "nope", "queue": "q"}, "kind must be one of"),
        ({"name": "bad name", "kind": "backlog", "queue": "q"}, "name must be"),
        ({"name": "x", "kind": "failure_rate"}, "a queue or a task"),
        ({"name": "x", "kind": "failure_rate", "queue": "q", "task": "t"}, "a queue or a task"),
        ({"name": "x", "kind": "failure_rate", "queue": "q", "threshold": 120}, "percentage"),
        ({"name": "x", "kind": "time_limit", "queue": "q", "task": "t"}, "a queue or a task (or neither"),
        ({"name": "x", "kind": "backlog", "queue": "q", "threshold": -1}, "threshold must be"),
        ({"name": "x", "kind": "backlog", "queue": "q", "window": 0}, "window must be above 0"),
        ({"name": "x", "kind": "backlog", "queue": "q", "colour": "red"}, "unknown field(s) colour"),
    ],
)
def test_an_invalid_rule_is_one_line_naming_the_problem(fields: dict[str, object], problem: str) -> None:
    # When a rule is read from those fields / Then it is refused with one line saying why
    with pytest.raises(ConfigError) as caught:
        AlertRule.from_dict(fields)
    assert problem in caught.value.message
    assert "\n" not in caught.value.message


def test_a_rule_survives_a_json_round_trip() -> None:
    # Given a rule with every field
    rule = AlertRule(
        name="f", kind="failure_rate", task="jobs.charge", threshold=20, for_seconds=30, window=600
    )
    # When / Then JSON gives it back, without unset targets
    assert AlertRule.from_json(rule.to_json()) == rule
    assert "queue" not in json.loads(rule.to_json())


def test_rules_of_the_setting_are_a_json_list_with_unique_names() -> None:
    # Given / When / Then
    assert parse_rules("") == []
    assert parse_rules(json.dumps([BACKLOG.to_dict()])) == [BACKLOG]
    with pytest.raises(ConfigError, match="duplicate name"):
        parse_rules(json.dumps([BACKLOG.to_dict(), BACKLOG.to_dict()]))
    with pytest.raises(ConfigError, match="JSON list"):
        parse_rules('{"name": "x"}')


def test_the_setting_refuses_a_bad_rule_in_one_line() -> None:
    # When TASK_ALERT_RULES holds an invalid rule / Then loading the settings names the variable
    with pytest.raises(ConfigError, match="invalid setting TASK_ALERT_RULES"):
        TaskSettings.load(alert_rules='[{"name": "x", "kind": "backlog"}]')


def test_a_rule_of_the_setting_wins_over_a_stored_one_of_that_name() -> None:
    # Given a stored rule and a configured one of the same name
    stored = AlertRule(name="emails-backlog", kind="backlog", queue="emails", threshold=5)
    # When merged / Then the setting's is kept
    assert merge_rules([BACKLOG], [stored]) == [BACKLOG]


# evaluate()


def test_a_breach_fires_once_and_resolves_once() -> None:
    # When the backlog goes over the threshold, stays there, then clears
    transitions = run(BACKLOG, [10, 101, 150, 200, 99, 50, 120])
    # Then one firing, one resolution, and a new incident for the new breach
    assert transitions == [("firing", 101), ("resolved", 99), ("firing", 120)]


def test_for_seconds_holds_a_firing_until_the_breach_lasted_that_long() -> None:
    # Given a rule that must be breached for 3 s
    rule = AlertRule(name="b", kind="backlog", queue="q", threshold=0, for_seconds=3)
    # When a short breach comes and goes, then a long one
    transitions = run(rule, [1, 1, 0, 1, 1, 1, 1, 0])
    # Then only the long one fires, once 3 s of it have passed
    assert transitions == [("firing", 1), ("resolved", 0)]


def test_no_worker_fires_at_or_below_its_threshold() -> None:
    # Given a queue that loses its workers, then gets one back
    rule = AlertRule(name="w", kind="no_worker", queue="q")
    # Then it fires at 0 and resolves at 1
    assert run(rule, [2, 0, 0, 1]) == [("firing", 0), ("resolved", 1)]


def test_an_unreadable_value_changes_nothing() -> None:
    # Given a firing incident
    incidents, _ = evaluate([BACKLOG], {BACKLOG.name: 500}, {}, now=1.0)
    # When the next reading fails
    after, transitions = evaluate([BACKLOG], {BACKLOG.name: None}, incidents, now=2.0)
    # Then nothing is sent and the incident stays open
    assert transitions == []
    assert after[BACKLOG.name].firing


def test_a_new_evaluator_continues_an_open_incident_without_sending_it_again() -> None:
    # Given an incident that fired, kept as JSON (as in Redis)
    incidents, _ = evaluate([BACKLOG], {BACKLOG.name: 500}, {}, now=1.0)
    kept = {name: Incident.from_json(incident.to_json()) for name, incident in incidents.items()}
    # When another process evaluates the same breach, then its end
    _, again = evaluate([BACKLOG], {BACKLOG.name: 600}, kept, now=2.0)
    _, cleared = evaluate([BACKLOG], {BACKLOG.name: 0}, kept, now=3.0)
    # Then it sends only the resolution, dated from the first firing
    assert again == []
    assert [(t.state, t.since) for t in cleared] == [("resolved", 1.0)]


def test_misfires_fire_on_new_misses_and_resolve_after_a_quiet_window() -> None:
    # Given a misfires rule resolving after 2 s without a new miss; 3 misses existed before
    rule = AlertRule(name="m", kind="misfires", window=2)
    # When the count grows, grows again, then stays
    transitions = run(rule, [3, 3, 4, 5, 5, 5, 5])
    # Then one firing, and one resolution once 2 s passed without a miss
    assert transitions == [("firing", 1), ("resolved", 0)]


def test_the_payload_has_the_documented_fields() -> None:
    # Given a firing
    _, transitions = evaluate([BACKLOG], {BACKLOG.name: 101}, {}, now=5.0)
    # Then its body has exactly these fields
    assert transitions[0].payload() == {"rule": "emails-backlog", "kind": "backlog", "target": "emails",
                                        "state": "firing", "value": 101.0, "threshold": 100,
                                        "since": 5.0, "at": 5.0}  # fmt: skip


# The signature


def test_the_signature_is_the_hmac_of_the_body() -> None:
    # Given a body and a secret
    body = encode({"rule": "x", "state": "firing"})
    # When signed / Then it verifies, and fails for another body or secret
    signature = sign(body, "s3cret")
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify(body, "s3cret", signature)
    assert not verify(body + b" ", "s3cret", signature)
    assert not verify(body, "other", signature)
