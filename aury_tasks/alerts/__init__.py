"""Alerts: rules the scheduler leader evaluates, and their webhook and log deliveries.

See ``docs/alerts.md``: :mod:`.rules` (what to watch), :mod:`.store` (rules and incidents in
Redis), :mod:`.readings` (the current values), :mod:`.evaluate` (which rules fire or resolve),
:mod:`.deliver` (the webhook and the log) and :mod:`.service` (the leader's loop).
"""

from __future__ import annotations

from ..config.alert_rules import KINDS, AlertRule, parse_rules
from .evaluate import Incident, Transition, evaluate

__all__ = ["KINDS", "AlertRule", "Incident", "Transition", "evaluate", "parse_rules"]
