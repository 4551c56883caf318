"""What the ledger commands share: the TaskManager (no task modules), one-line errors, output.

``status``, ``result``, ``list``, ``dlq`` … read and write the ledger only; they never import task
modules, so they work from any machine that reaches the Redis, with the project's code or not.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import click
import redis

from ..core.errors import BrokerUnavailable
from ..core.redaction import redact_text
from ..tasks.manager import TaskManager
from .context import AumContext

P = ParamSpec("P")
R = TypeVar("R")


def pass_ledger(command: Callable[Concatenate[TaskManager, P], R]) -> Callable[P, R]:
    """Give a command body the TaskManager as first argument, without importing task modules.

    A Redis that cannot be reached becomes :class:`BrokerUnavailable` (exit 4), one line naming
    the masked URL.
    """

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        aum = click.get_current_context().ensure_object(AumContext)
        aum.setup_logging()
        tm = aum.task_manager()
        with reaching_ledger(tm):
            return command(tm, *args, **kwargs)

    return run


@contextlib.contextmanager
def reaching_ledger(tm: TaskManager) -> Iterator[None]:
    """Turn a Redis connection error in the block into :class:`BrokerUnavailable` (exit 4)."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        info = tm.broker_info
        raise BrokerUnavailable(
            f"ledger {info.ledger_display_url or info.display_url} unreachable ({redact_text(str(exc))})"
        ) from None


def resolve_task_name(tm: TaskManager, name: str | None) -> str | None:
    """The full task name the ledger knows for ``name``, which may be a bare function name.

    A name the ledger has never seen is returned as given (it matches nothing).

    Raises:
      click.BadParameter: when a bare name matches several tasks.
    """
    if name is None:
        return None
    known = tm.store.task_names()
    if name in known:
        return name
    matches = sorted(full for full in known if full.rsplit(".", 1)[-1] == name)
    if len(matches) > 1:
        raise click.BadParameter(f"{name!r} is ambiguous: {', '.join(matches)}", param_hint="'--task'")
    return matches[0] if matches else name


def short_name(task_name: str) -> str:
    """``modules.emails.tasks.send_welcome_email`` -> ``send_welcome_email``."""
    return task_name.rsplit(".", 1)[-1]


def echo_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """Print ``name  value`` lines, values aligned; a multi-line value continues under its first line."""
    width = max((len(name) for name, _ in fields), default=0)
    for name, value in fields:
        first, *rest = str(value).splitlines() or [""]
        click.echo(f"{name.ljust(width)}  {first}".rstrip())
        for line in rest:
            click.echo(f"{'':{width}}  {line}".rstrip())


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON (for ``jq`` and scripts)."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))
