"""The leader's alert loop: every ``TASK_ALERT_INTERVAL`` seconds, read, evaluate, deliver.

Only the scheduler process holding the leader lease evaluates, so one process sends. The
incidents live in Redis: a new leader carries on an open incident without sending it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import redis
from loguru import logger

from ..config.alert_rules import AlertRule, parse_rules
from ..core.errors import AuryTasksError
from ..core.redaction import redact_text
from .deliver import WebhookNotifier
from .evaluate import Transition, evaluate
from .readings import Readings
from .store import AlertStore, merge_rules

if TYPE_CHECKING:
    from ..config.snapshot import Settings
    from ..scheduler.manager import SchedulerManager
    from ..tasks.manager import TaskManager


def notifier_from_settings(settings: Settings) -> WebhookNotifier:
    """The notifier of ``TASK_ALERT_WEBHOOK_URL`` and ``TASK_ALERT_SECRET``."""
    secret = settings.alert_secret  # SecretStr in TaskSettings, plain in a SettingsSnapshot
    if secret is not None and not isinstance(secret, str):
        secret = secret.get_secret_value()
    return WebhookNotifier(settings.alert_webhook_url_value, secret)


class AlertService:
    """Rules from settings and Redis, evaluated against the system ``tm`` sees.

    Parameters:
      tm: the TaskManager (ledger, broker).
      scheduler: the SchedulerManager (its Redis keeps rules and incidents, and the miss counts).
      notifier: where transitions go (default: from the settings).
    """

    def __init__(
        self, tm: TaskManager, scheduler: SchedulerManager, notifier: WebhookNotifier | None = None
    ) -> None:
        self.tm = tm
        schedules = scheduler.store
        self.store = AlertStore(schedules.client, schedules.keys)
        self.readings = Readings(tm, schedules)
        settings = tm.settings
        self.configured: list[AlertRule] = parse_rules(settings.alert_rules)
        self.interval = float(settings.alert_interval)
        self.notifier = notifier or notifier_from_settings(settings)

    def rules(self) -> list[AlertRule]:
        """The rules in effect: ``TASK_ALERT_RULES`` merged with those added by ``aum alerts add``."""
        return merge_rules(self.configured, self.store.rules())

    def evaluate_once(self, now: float | None = None) -> list[Transition]:
        """Read every rule, update the incidents in Redis, deliver the transitions; return them."""
        now = time.time() if now is None else now
        rules = self.rules()
        values = self.readings.read(rules, now)
        incidents, transitions = evaluate(rules, values, self.store.incidents(), now)
        self.store.save_incidents(incidents, keep=[rule.name for rule in rules])
        for transition in transitions:  # saved first: a crash after this never sends twice
            self.notifier.notify(transition)
        return transitions

    def run(self, is_leader: Callable[[], bool], stopping: threading.Event) -> None:
        """Evaluate every :attr:`interval` seconds while ``is_leader()``, until ``stopping`` is set."""
        rules = self.rules()
        logger.info("alerts: {} rule(s), every {:g} s, webhook {}", len(rules), self.interval,
                    self.notifier.shown_url)  # fmt: skip
        try:
            while not stopping.wait(self.interval):
                if not is_leader():
                    continue
                try:
                    self.evaluate_once()
                except (AuryTasksError, redis.RedisError) as exc:
                    logger.warning("alerts could not be evaluated: {}", redact_text(str(exc)))
        finally:
            self.notifier.close()


def alert_loop(scheduler: SchedulerManager) -> Callable[[Callable[[], bool], threading.Event], None]:
    """The leader's alert work for a :class:`~aury_tasks.scheduler.runner.SchedulerRunner`.

    Called with ``is_leader()`` and the runner's stop event, it evaluates the rules while the
    process leads (one log line and no alerts when they cannot be read).
    """

    def alerts(is_leader: Callable[[], bool], stopping: threading.Event) -> None:
        try:
            service = AlertService(scheduler.task_manager, scheduler)
        except AuryTasksError as exc:
            logger.error("alerts are off: {}", exc)
            return
        service.run(is_leader, stopping)

    return alerts
