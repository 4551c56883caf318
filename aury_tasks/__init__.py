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

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aury-tasks")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from .dead_letters import DeadLetter, DeadLetterQueue
from .errors import (
    AuryTasksError,
    BrokerUnavailable,
    ConfigError,
    DiscoveryError,
    EmbeddedServerError,
    LedgerUnavailable,
    PayloadTooLarge,
    PermanentError,
    SchedulerError,
    SerializationError,
    TaskCancelled,
    TaskExpired,
    TaskFailed,
    TaskInterrupted,
    TaskNotFound,
    TaskOptionError,
    TaskRecordNotFound,
    TaskStateError,
)
from .events import ProgressSubscription
from .handle import TaskHandle
from .manager import TaskManager
from .progress import report_progress
from .scheduler import CronCheck, JobDefinition, JobInfo, JobOptions, LastRun, SchedulerManager, TriggerSpec
from .settings import RunMode, TaskSettings, get_settings
from .status import TaskStatus
from .store import Progress, QueueStats, Statistics, TaskPage, TaskRecord, WorkerInfo
from .task import Task
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
    "TaskSettings",
    "get_settings",
    # Errors
    "AuryTasksError",
    "BrokerUnavailable",
    "ConfigError",
    "DiscoveryError",
    "EmbeddedServerError",
    "LedgerUnavailable",
    "PayloadTooLarge",
    "PermanentError",
    "SchedulerError",
    "SerializationError",
    "TaskCancelled",
    "TaskExpired",
    "TaskFailed",
    "TaskInterrupted",
    "TaskNotFound",
    "TaskOptionError",
    "TaskRecordNotFound",
    "TaskStateError",
]
