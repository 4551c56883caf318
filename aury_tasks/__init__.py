"""aury-tasks: background tasks, retries, scheduled jobs and monitoring on Dramatiq.

>>> from aury_tasks import TaskManager
>>> tm = TaskManager.get_instance()
>>> @tm.conditional_task(queue_name="emails", max_retries=3, timeout=600, retry_delay=30)
... async def send_welcome_email(user_id: str) -> dict: ...
>>> handle = send_welcome_email.send(user_id="42")
>>> handle.get_result(timeout=30)
>>> SchedulerManager.get_instance().add_job(func=send_welcome_email.send, cron="0 9 * * 1", args=["42"])
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    __version__: str

    from .config.settings import TaskSettings, get_settings
    from .config.snapshot import SettingsSnapshot
    from .core.errors import (
        AuryTasksError,
        BrokerFeatureUnsupported,
        BrokerUnavailable,
        ConfigError,
        DiscoveryError,
        EmbeddedServerError,
        LedgerUnavailable,
        PayloadTooLarge,
        PermanentError,
        ReplicationTimeout,
        ScheduledJobNotFound,
        SchedulerError,
        SerializationError,
        SoftTimeLimitExceeded,
        TaskCancelled,
        TaskExpired,
        TaskFailed,
        TaskInterrupted,
        TaskNotFound,
        TaskOptionError,
        TaskRecordNotFound,
        TaskStateError,
    )
    from .core.run_mode import RunMode
    from .core.status import TaskStatus
    from .ledger import Progress, QueueStats, Statistics, TaskPage, TaskRecord, WorkerInfo
    from .ledger.dead_letters import DeadLetter, DeadLetterQueue
    from .ledger.events import ProgressSubscription
    from .scheduler import (
        CronCheck,
        JobDefinition,
        JobInfo,
        JobOptions,
        LastRun,
        SchedulerManager,
        TriggerSpec,
    )
    from .tasks.handle import TaskHandle
    from .tasks.manager import TaskManager
    from .tasks.progress import report_progress
    from .tasks.task import Task
    from .workflows import (
        Chain,
        Chord,
        Group,
        GroupHandle,
        Signature,
        TaskChain,
        WorkflowHandle,
        WorkflowTree,
        batch,
        chain,
        chord,
        group,
    )

#: Where each public name lives: imported on first use, so that importing one part of the package
#: (the embedded server, the worker's supervisor) does not load the rest.
_LOCATIONS: dict[str, str] = {
    "DeadLetter": "ledger.dead_letters",
    "DeadLetterQueue": "ledger.dead_letters",
    "AuryTasksError": "core.errors",
    "BrokerFeatureUnsupported": "core.errors",
    "BrokerUnavailable": "core.errors",
    "ConfigError": "core.errors",
    "DiscoveryError": "core.errors",
    "EmbeddedServerError": "core.errors",
    "LedgerUnavailable": "core.errors",
    "PayloadTooLarge": "core.errors",
    "PermanentError": "core.errors",
    "ReplicationTimeout": "core.errors",
    "ScheduledJobNotFound": "core.errors",
    "SchedulerError": "core.errors",
    "SerializationError": "core.errors",
    "SoftTimeLimitExceeded": "core.errors",
    "TaskCancelled": "core.errors",
    "TaskExpired": "core.errors",
    "TaskFailed": "core.errors",
    "TaskInterrupted": "core.errors",
    "TaskNotFound": "core.errors",
    "TaskOptionError": "core.errors",
    "TaskRecordNotFound": "core.errors",
    "TaskStateError": "core.errors",
    "ProgressSubscription": "ledger.events",
    "TaskHandle": "tasks.handle",
    "TaskManager": "tasks.manager",
    "report_progress": "tasks.progress",
    "CronCheck": "scheduler",
    "JobDefinition": "scheduler",
    "JobInfo": "scheduler",
    "JobOptions": "scheduler",
    "LastRun": "scheduler",
    "SchedulerManager": "scheduler",
    "TriggerSpec": "scheduler",
    "RunMode": "core.run_mode",
    "SettingsSnapshot": "config.snapshot",
    "TaskSettings": "config.settings",
    "get_settings": "config.settings",
    "TaskStatus": "core.status",
    "Progress": "ledger",
    "QueueStats": "ledger",
    "Statistics": "ledger",
    "TaskPage": "ledger",
    "TaskRecord": "ledger",
    "WorkerInfo": "ledger",
    "Task": "tasks.task",
    "Chain": "workflows",
    "Chord": "workflows",
    "Group": "workflows",
    "GroupHandle": "workflows",
    "Signature": "workflows",
    "TaskChain": "workflows",
    "WorkflowHandle": "workflows",
    "WorkflowTree": "workflows",
    "batch": "workflows",
    "chain": "workflows",
    "chord": "workflows",
    "group": "workflows",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read on first use: importlib.metadata weighs on a worker's supervisor
        globals()[name] = _installed_version()
        return globals()[name]
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'aury_tasks' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aury-tasks")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def __dir__() -> list[str]:
    return sorted({*globals(), *_LOCATIONS, "__version__"})


__all__ = [  # noqa: RUF022 - grouped by topic
    "__version__",
    # Tasks
    "Task",
    "TaskHandle",
    "TaskManager",
    "report_progress",
    # Workflows
    "Chain",
    "Chord",
    "Group",
    "GroupHandle",
    "Signature",
    "TaskChain",
    "WorkflowHandle",
    "WorkflowTree",
    "batch",
    "chain",
    "chord",
    "group",
    # Task state
    "DeadLetter",
    "DeadLetterQueue",
    "Progress",
    "ProgressSubscription",
    "QueueStats",
    "Statistics",
    "TaskPage",
    "TaskRecord",
    "TaskStatus",
    "WorkerInfo",
    # Scheduled jobs
    "SchedulerManager",
    "CronCheck",
    "JobDefinition",
    "JobInfo",
    "JobOptions",
    "LastRun",
    "TriggerSpec",
    # Settings
    "RunMode",
    "SettingsSnapshot",
    "TaskSettings",
    "get_settings",
    # Errors
    "AuryTasksError",
    "BrokerFeatureUnsupported",
    "BrokerUnavailable",
    "ConfigError",
    "DiscoveryError",
    "EmbeddedServerError",
    "LedgerUnavailable",
    "PayloadTooLarge",
    "PermanentError",
    "ReplicationTimeout",
    "ScheduledJobNotFound",
    "SchedulerError",
    "SerializationError",
    "SoftTimeLimitExceeded",
    "TaskCancelled",
    "TaskExpired",
    "TaskFailed",
    "TaskInterrupted",
    "TaskNotFound",
    "TaskOptionError",
    "TaskRecordNotFound",
    "TaskStateError",
]
