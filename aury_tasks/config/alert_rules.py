"""An alert rule: what to watch, on which queue or task, above which threshold, for how long."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from ..core.errors import ConfigError

#: The kinds of rule, and what each one's value is.
KINDS: dict[str, str] = {
    "backlog": "messages waiting in the queue",
    "backlog_age": "seconds the oldest pending task of the queue has waited",
    "failure_rate": "percent of the tasks of the queue or task that ended in the window and failed",
    "dead_letters": "messages in the queue's dead-letter queue",
    "no_worker": "worker processes alive serving the queue (fires at or below the threshold)",
    "misfires": "scheduled ticks missed (of one job, or all) since the rule was last evaluated",
    "time_limit": "tasks (of the queue or task, or all) stopped by their time limit in the window",
}
#: Kinds whose target is a queue (required), a queue or a task, or a scheduled job (optional).
QUEUE_KINDS = frozenset({"backlog", "backlog_age", "dead_letters", "no_worker"})
_NAME = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,99}")
_FIELDS = ("name", "kind", "queue", "task", "job", "threshold", "for_seconds", "window")


@dataclass(frozen=True)
class AlertRule:
    """One alert rule; it fires when its value passes ``threshold`` for ``for_seconds``.

    Parameters:
      name: unique name (letters, digits, ``.``, ``_``, ``-``).
      kind: one of :data:`KINDS`.
      queue: the queue watched (required by the queue kinds; ``failure_rate`` takes a queue or task,
        ``time_limit`` a queue, a task or neither).
      task: the task name watched by ``failure_rate`` or ``time_limit``.
      job: the scheduled job watched by ``misfires`` (none: every job).
      threshold: the value above which it fires (``no_worker``: at or below which; default 0).
      for_seconds: how long the value must stay past the threshold before it fires.
      window: seconds of history ``failure_rate`` and ``time_limit`` look at.
    """

    name: str
    kind: str
    threshold: float = 0.0
    queue: str | None = None
    task: str | None = None
    job: str | None = None
    for_seconds: float = 0.0
    window: float = 300.0

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ConfigError(f"invalid alert rule {self.name!r}: {problem}")

    def _problem(self) -> str:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            return "name must be letters, digits, '.', '_' or '-'"
        if self.kind not in KINDS:
            return f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}"
        if self.kind in QUEUE_KINDS and not self.queue:
            return f"kind {self.kind} needs a queue"
        if self.kind == "failure_rate" and bool(self.queue) == bool(self.task):
            return "kind failure_rate needs a queue or a task (one of them)"
        if self.kind == "time_limit" and self.queue and self.task:
            return "kind time_limit takes a queue or a task (or neither: every task), not both"
        for field in ("threshold", "for_seconds", "window"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                return f"{field} must be a number, 0 or more"
        if self.kind == "failure_rate" and not 0 <= self.threshold <= 100:
            return "threshold of failure_rate is a percentage, from 0 to 100"
        if self.window <= 0:
            return "window must be above 0"
        return ""

    @property
    def target(self) -> str:
        """What the rule watches, as shown: the queue, the task, the job, or ``*``."""
        return self.queue or self.task or self.job or "*"

    def breached(self, value: float) -> bool:
        """Whether ``value`` is past the threshold."""
        if self.kind == "no_worker":
            return value <= self.threshold
        return value > self.threshold

    def to_dict(self) -> dict[str, Any]:
        """The rule as plain JSON values (unset targets left out)."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    def to_json(self) -> str:
        """The rule as a JSON object."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> AlertRule:
        """Read a rule from :meth:`to_dict`'s form.

        Raises:
          ConfigError: one line saying what is wrong.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"invalid alert rule: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise ConfigError(
                f"invalid alert rule {data.get('name')!r}: unknown field(s) {', '.join(unknown)}"
            )
        if "name" not in data or "kind" not in data:
            raise ConfigError(f"invalid alert rule {data.get('name')!r}: name and kind are required")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> AlertRule:
        """Read a rule from :meth:`to_json`."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"invalid alert rule: not JSON ({exc})") from None
        return cls.from_dict(data)


def parse_rules(text: str) -> list[AlertRule]:
    """The rules of ``TASK_ALERT_RULES``: a JSON list of rule objects (empty text: none).

    Raises:
      ConfigError: the text is not a JSON list, a rule is invalid, or two rules share a name.
    """
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"invalid alert rules: not JSON ({exc})") from None
    if not isinstance(data, list):
        raise ConfigError("invalid alert rules: expected a JSON list of rule objects")
    rules = [AlertRule.from_dict(item) for item in data]
    names = [rule.name for rule in rules]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"invalid alert rules: duplicate name(s) {', '.join(duplicates)}")
    return rules
