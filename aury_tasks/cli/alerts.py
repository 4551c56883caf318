"""``aum alerts``: list, add and remove alert rules; send a test delivery to the webhook."""

from __future__ import annotations

import time

import click

from ..alerts.deliver import encode
from ..alerts.service import notifier_from_settings
from ..alerts.store import AlertStore, merge_rules
from ..config.alert_rules import KINDS, AlertRule, parse_rules
from ..core.errors import ConfigError
from ..scheduler.manager import SchedulerManager
from ..tasks.manager import TaskManager
from .context import AumContext, echo_table
from .ledger import pass_ledger
from .times import Duration


def _store(tm: TaskManager) -> AlertStore:
    schedules = SchedulerManager.get_instance(tm.name).store
    return AlertStore(schedules.client, schedules.keys)


def _configured(tm: TaskManager) -> list[AlertRule]:
    return parse_rules(tm.settings.alert_rules)


@click.group()
def alerts() -> None:
    """Alert rules the scheduler leader evaluates, delivered to TASK_ALERT_WEBHOOK_URL and the log.

    Rules come from TASK_ALERT_RULES and from `aum alerts add` (kept in Redis). Each alert is
    sent once when it fires and once when it resolves.

    \b
    Examples:
      aum alerts list
      aum alerts add emails-backlog --kind backlog --queue emails --threshold 100 --for 60
      aum alerts add emails-failing --kind failure_rate --queue emails --threshold 20 --window 10m
      aum alerts test
      aum alerts remove emails-backlog
    """


@alerts.command("list", short_help="List the rules and whether each is firing.")
@pass_ledger
def list_rules(tm: TaskManager) -> None:
    """List the rules in effect (settings and Redis) with their state: ok, pending or firing."""
    store = _store(tm)
    configured = {rule.name for rule in _configured(tm)}
    rules = merge_rules(_configured(tm), store.rules())
    if not rules:
        click.echo("no alert rules (add one: aum alerts add NAME --kind backlog --queue Q --threshold N)",
                   err=True)  # fmt: skip
        return
    incidents = store.incidents()
    rows = []
    for rule in rules:
        incident = incidents.get(rule.name)
        state = "ok"
        if incident is not None and incident.firing:
            state = "firing"
        elif incident is not None and incident.breached_since is not None:
            state = "pending"
        rows.append([rule.name, rule.kind, rule.target, rule.threshold, rule.for_seconds, state,
                     "setting" if rule.name in configured else "redis"])  # fmt: skip
    echo_table(["NAME", "KIND", "TARGET", "THRESHOLD", "FOR (S)", "STATE", "FROM"], rows)


@alerts.command(short_help="Add or replace a rule (kept in Redis).")
@click.argument("name")
@click.option("--kind", type=click.Choice(list(KINDS)), required=True, help="What the rule watches.")
@click.option("--queue", help="The queue watched.")
@click.option("--task", "task_name", help="The task watched (failure_rate).")
@click.option("--job", help="The scheduled job watched (misfires; default every job).")
@click.option("--threshold", type=float, default=0.0, show_default=True,
              help="Fires above it (no_worker: at or below it; failure_rate: a percentage).")  # fmt: skip
@click.option(
    "--for",
    "for_seconds",
    type=Duration(bare_seconds=True),
    default=0.0,
    metavar="DURATION",
    help="How long the value must stay past the threshold before it fires.  [default: 0]",
)
@click.option(
    "--window",
    type=Duration(bare_seconds=True),
    default=300.0,
    metavar="DURATION",
    help="History failure_rate looks at (misfires: quiet time before it resolves).  [default: 5m]",
)
@pass_ledger
def add(tm: TaskManager, name: str, kind: str, queue: str | None, task_name: str | None, job: str | None,
        threshold: float, for_seconds: float, window: float) -> None:  # fmt: skip
    """Add the rule NAME, or replace the rule of that name; the leader uses it at its next evaluation."""
    rule = AlertRule(name=name, kind=kind, queue=queue, task=task_name, job=job, threshold=threshold,
                     for_seconds=float(for_seconds), window=float(window))  # fmt: skip
    if name in {configured.name for configured in _configured(tm)}:
        click.echo(f"note: TASK_ALERT_RULES has a rule {name!r}, which wins over this one", err=True)
    _store(tm).put(rule)
    click.echo(f"alert rule {name} saved: {kind} of {rule.target} above {threshold:g}")


@alerts.command(short_help="Remove a rule added with `aum alerts add`.")
@click.argument("name")
@pass_ledger
def remove(tm: TaskManager, name: str) -> None:
    """Remove the rule NAME (and its open incident, without a resolution)."""
    if not _store(tm).remove(name):
        raise ConfigError(f"no alert rule {name!r} in Redis (rules of TASK_ALERT_RULES are removed there)")
    click.echo(f"alert rule {name} removed")


@alerts.command(short_help="Send a test delivery to the webhook now.")
@click.argument("name", required=False)
@pass_ledger
def test(tm: TaskManager, name: str | None) -> None:
    """POST a test alert (state "test") to TASK_ALERT_WEBHOOK_URL and say whether it answered 2xx.

    With NAME, the body is that rule's. Exit code 4 when the webhook is unreachable or fails.
    """
    aum = click.get_current_context().ensure_object(AumContext)
    notifier = notifier_from_settings(aum.settings)
    now = time.time()
    payload: dict[str, object] = {"rule": "test", "kind": "test", "target": "*", "state": "test",
                                  "value": 0, "threshold": 0, "since": now, "at": now}  # fmt: skip
    if name is not None:
        rules = {rule.name: rule for rule in merge_rules(_configured(tm), _store(tm).rules())}
        if name not in rules:
            raise ConfigError(f"no alert rule {name!r}")
        rule = rules[name]
        payload.update(rule=rule.name, kind=rule.kind, target=rule.target, threshold=rule.threshold)
    status = notifier.post(encode(payload))
    signed = "signed" if notifier.secret else "unsigned"
    click.echo(f"alert webhook {notifier.shown_url} answered {status} ({signed})")
