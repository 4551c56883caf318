"""A scheduled job as it is kept: which task to send, with what, when, and how to fire it."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..core.encoding import check_json_arguments
from ..core.errors import SchedulerError
from .triggers import TriggerSpec, build_trigger

#: Where a job comes from: a ``@scheduled_task`` decorator (re-declared by each deploy), or a
#: call at run time (``add_job``, the CLI, the API), kept until removed.
ORIGINS = ("code", "runtime")


@dataclass(frozen=True)
class JobOptions:
    """How a job fires (APScheduler's job options)."""

    #: Run a job that missed several fires once, not once per missed fire.
    coalesce: bool = True
    #: Sends of this job in flight at once (a fire while one is running is skipped).
    max_instances: int = 1
    #: Seconds after its planned time a fire may still happen (later ones are skipped as misfires).
    misfire_grace_time: float = 30.0
    #: Random delay up to this many seconds added to each fire (spreads a crowd of jobs).
    jitter: float | None = None

    def __post_init__(self) -> None:
        if self.max_instances < 1:
            raise SchedulerError(f"max_instances must be 1 or more, got {self.max_instances}")
        if self.misfire_grace_time <= 0:
            raise SchedulerError(f"misfire_grace_time must be above 0 seconds, got {self.misfire_grace_time}")
        if self.jitter is not None and self.jitter < 0:
            raise SchedulerError(f"jitter must be 0 seconds or more, got {self.jitter}")


@dataclass(frozen=True)
class JobDefinition:
    """One scheduled job: it sends task ``task_name`` to ``queue_name`` with ``args``/``kwargs``.

    Kept as JSON in Redis; never a pickled function. The scheduler process only enqueues the
    task's message; a worker runs it.
    """

    id: str
    task_name: str
    queue_name: str
    trigger: TriggerSpec
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: JobOptions = field(default_factory=JobOptions)
    paused: bool = False
    #: ``code`` (a decorator) or ``runtime`` (added by a call).
    origin: str = "runtime"
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not self.id or any(ch.isspace() for ch in self.id):
            raise SchedulerError(f"a job id is a non-empty name without spaces, got {self.id!r}")
        if self.origin not in ORIGINS:
            raise SchedulerError(f"origin is one of {', '.join(ORIGINS)}, got {self.origin!r}")
        check_json_arguments(self.task_name, self.args, self.kwargs)
        build_trigger(self.trigger)

    def changed(self, **changes: Any) -> JobDefinition:
        """A copy with ``changes`` and a new ``updated_at``."""
        return replace(self, **changes, updated_at=time.time())

    def to_json(self) -> str:
        """The definition as JSON text."""
        data = asdict(self)
        data["trigger"] = self.trigger.to_dict()
        return json.dumps(data, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> JobDefinition:
        """The definition :meth:`to_json` wrote.

        Raises:
          SchedulerError: when the text is not a job definition.
        """
        try:
            data = json.loads(text)
            data["trigger"] = TriggerSpec.from_dict(data["trigger"])
            data["options"] = JobOptions(**data.get("options") or {})
            return cls(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise SchedulerError(f"not a job definition ({type(exc).__name__}: {exc})") from None


def tick_idempotency_key(job_id: str, planned_at: float) -> str:
    """The idempotency key of the tick of ``job_id`` planned for ``planned_at`` (epoch seconds).

    The same for every send of that tick, from any scheduler process: once one of its messages
    ran, another (a send tried again because its reply was lost) is acknowledged without running.
    """
    return f"tick:{job_id}@{round(planned_at * 1000)}"
