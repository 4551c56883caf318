"""aury-tasks: background tasks, retries, scheduled jobs and monitoring on Dramatiq.

>>> from aury_tasks import TaskManager
>>> tm = TaskManager.get_instance()
>>> @tm.conditional_task(queue_name="emails", max_retries=3, timeout=600, retry_delay=30)
... async def send_welcome_email(user_id: str) -> dict: ...
>>> handle = send_welcome_email.send(user_id="42")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aury-tasks")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from .errors import (
    AuryTasksError,
    BrokerUnavailable,
    ConfigError,
    DiscoveryError,
    EmbeddedServerError,
    PermanentError,
    SerializationError,
    TaskFailed,
    TaskNotFound,
    TaskOptionError,
)
from .handle import TaskHandle
from .manager import TaskManager
from .settings import RunMode, TaskSettings, get_settings
from .task import Task

__all__ = [
    # Errors
    "AuryTasksError",
    "BrokerUnavailable",
    "ConfigError",
    "DiscoveryError",
    "EmbeddedServerError",
    "PermanentError",
    # Settings
    "RunMode",
    "SerializationError",
    # Tasks
    "Task",
    "TaskFailed",
    "TaskHandle",
    "TaskManager",
    "TaskNotFound",
    "TaskOptionError",
    "TaskSettings",
    "__version__",
    "get_settings",
]
