"""The bodies the API accepts, as pydantic models (which also write its OpenAPI document).

Limits here are the API's own (a delay of at most a year, a priority from 0 to 9); what the
Python API checks itself (JSON arguments, message size, a cron expression) it keeps checking,
and its error becomes a ``422`` naming the field.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: A queue name, as ``TASK_QUEUE_NAME`` accepts it.
QUEUE_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9._-]{0,199}$"
#: A scheduled job's name.
JOB_NAME_PATTERN = r"^[^\s/][^/]{0,199}$"
#: A year, in seconds: the longest delay or time limit the API accepts.
YEAR = 366 * 86400.0


class Body(BaseModel):
    """A request body: unknown fields are refused, so a typo is an error and not ignored."""

    model_config = ConfigDict(extra="forbid")


def aware(moment: datetime | None) -> datetime | None:
    """``moment`` with its zone; a moment given without one is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


class SendTask(Body):
    """``POST /api/v1/tasks``: send a registered task."""

    task: str = Field(min_length=1, max_length=500, description="A registered task name (see `aum tasks`).")
    args: list[Any] = Field(default_factory=list, description="Positional arguments (JSON values).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments (JSON values).")
    queue: str | None = Field(default=None, pattern=QUEUE_PATTERN, description="Instead of the task's own.")
    priority: int | None = Field(default=None, ge=0, le=9, description="0 to 9, higher runs first.")
    delay: float | None = Field(default=None, ge=0, le=YEAR, description="Seconds before it may run.")
    eta: datetime | None = Field(default=None, description="When it may run: UNIX seconds or ISO 8601.")
    expires: float | None = Field(
        default=None, gt=0, le=YEAR, description="Seconds after which it is not run."
    )
    max_retries: int | None = Field(default=None, ge=0, le=1000, description="Instead of the task's own.")
    timeout: float | None = Field(default=None, gt=0, le=YEAR, description="Time limit in seconds.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="JSON values kept on the record.")

    @field_validator("eta")
    @classmethod
    def _zone(cls, value: datetime | None) -> datetime | None:
        return aware(value)

    @model_validator(mode="after")
    def _one_start(self) -> SendTask:
        if self.delay is not None and self.eta is not None:
            raise ValueError("give delay or eta, not both")
        return self


class Step(Body):
    """One step of a workflow: a task, or a chain, group or chord of steps (exactly one)."""

    task: str | None = Field(default=None, min_length=1, max_length=500)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = Field(default=None, pattern=QUEUE_PATTERN)
    immutable: bool = Field(default=False, description="Do not pass the previous step's result.")
    chain: list[Step] | None = Field(default=None, min_length=1, max_length=1000)
    group: list[Step] | None = Field(default=None, min_length=1, max_length=10_000)
    member_failure: Literal["fail", "include"] = "fail"
    chord: list[Step] | None = Field(default=None, min_length=1, max_length=10_000)
    callback: Step | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        kinds = [name for name in ("task", "chain", "group", "chord") if getattr(self, name) is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"a step is one of task, chain, group or chord; got {', '.join(kinds) or 'none'}"
            )
        if (self.chord is None) != (self.callback is None):
            raise ValueError("a chord needs a callback, and only a chord has one")
        return self


class SendWorkflow(Body):
    """``POST /api/v1/workflows``."""

    workflow: Step


class Trigger(Body):
    """When a scheduled job fires: one of ``cron``, ``interval``, ``run_at`` or ``trigger``."""

    cron: str | None = Field(default=None, max_length=200, description="Five fields, e.g. `0 2 * * *`.")
    interval: float | None = Field(default=None, gt=0, le=YEAR, description="Seconds between fires.")
    run_at: datetime | None = Field(default=None, description="Once, at this moment.")
    trigger: Literal["cron", "interval", "date"] | None = Field(
        default=None, description="APScheduler's trigger, with its arguments in `trigger_args`."
    )
    trigger_args: dict[str, Any] = Field(default_factory=dict)
    timezone: str | None = Field(default=None, max_length=100, description="IANA name; default the setting.")

    def trigger_arguments(self) -> dict[str, Any]:
        """The trigger as ``SchedulerManager.add_job`` takes it (only what was given)."""
        given = {"cron": self.cron, "interval": self.interval, "run_at": aware(self.run_at),
                 "trigger": self.trigger, "timezone": self.timezone}  # fmt: skip
        return {name: value for name, value in given.items() if value is not None} | self.trigger_args


class JobOptionsBody(Body):
    """How a job fires (fields left out keep their value or default)."""

    coalesce: bool | None = None
    max_instances: int | None = Field(default=None, ge=1, le=1000)
    misfire_grace_time: float | None = Field(default=None, gt=0, le=YEAR)
    jitter: float | None = Field(default=None, ge=0, le=86400)


class AddJob(Trigger, JobOptionsBody):
    """``POST /api/v1/scheduled-tasks``."""

    name: str = Field(pattern=JOB_NAME_PATTERN, description="The job's id.")
    task: str = Field(min_length=1, max_length=500)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    paused: bool = False


class ChangeJob(Trigger, JobOptionsBody):
    """``PUT /api/v1/scheduled-tasks/{name}``: what is given changes, the rest stays."""

    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    paused: bool | None = None


class CheckCron(Body):
    """``POST /api/v1/scheduler/validate-cron``."""

    expression: str = Field(max_length=200)
    timezone: str | None = Field(default=None, max_length=100)
    count: int = Field(default=5, ge=1, le=50)


class Requeue(Body):
    """``POST /api/v1/queues/{name}/dead-letters/requeue``: these ids, or all when left out."""

    task_ids: list[str] | None = Field(default=None, max_length=10_000)


class Login(Body):
    """``POST /api/v1/session``."""

    token: str = Field(max_length=1000)
