"""Settings handed to a worker process already checked, so that no pydantic loads where tasks run.

``aum worker`` reads and checks :class:`~aury_tasks.config.settings.TaskSettings` once, then passes
them to the worker processes it starts as a :class:`SettingsSnapshot`, inside their set-up
(:class:`aury_tasks.worker.setup.WorkerSetup`, JSON in one environment variable). A worker
process builds its broker from the snapshot instead of reading the settings again, so pydantic
and pydantic-settings (about 11 MiB of its memory) are never imported there, unless a task module
imports them itself.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.keys import KeySpace
from ..core.run_mode import RunMode

if TYPE_CHECKING:
    from typing import TypeAlias

    from .settings import TaskSettings


@dataclass(frozen=True)
class SettingsSnapshot:
    """The values of a checked :class:`~aury_tasks.config.settings.TaskSettings`, one attribute each.

    The URLs are plain strings, under the names of ``TaskSettings``' clear-text properties
    (``broker_url_value``, ``result_backend_url_value``, ``alert_webhook_url_value``), and left out
    of ``repr``, as is ``alert_secret`` (plain too). Every other attribute has the name and value
    of the field it copies (but the ``api_*`` ones, which only ``aum serve`` reads); a field added
    to ``TaskSettings`` and not here fails
    :meth:`TaskSettings.snapshot <aury_tasks.config.settings.TaskSettings.snapshot>`.
    """

    broker_url_value: str | None = field(repr=False)
    result_backend_url_value: str | None = field(repr=False)
    sentinel_password_value: str | None = field(repr=False)
    key_prefix: str
    broker_min_replicas: int
    broker_replica_timeout_ms: int
    queue_name: str
    max_workers: int
    max_tasks_per_child: int
    max_memory_per_child: int
    timeout: float
    max_retries: int
    retry_delay: float
    max_retry_delay: float
    heartbeat_timeout: float
    max_message_bytes: int
    max_deliveries: int
    rabbitmq_queue_type: str
    rabbitmq_max_priority: int
    rabbitmq_consumer_timeout_ms: int
    track_state: bool
    result_ttl: float
    scheduler_timezone: str
    scheduler_misfire_grace_time: float
    scheduler_coalesce: bool
    scheduler_max_instances: int
    modules_dir: str
    data_dir: str
    log_level: str
    log_json: bool
    run_mode: RunMode
    metrics_port: int
    metrics_host: str
    alert_webhook_url_value: str | None = field(repr=False)
    alert_secret: str | None = field(repr=False)
    alert_interval: float
    alert_rules: str

    @property
    def keys(self) -> KeySpace:
        """The keys under :attr:`key_prefix` (``TASK_KEY_PREFIX``)."""
        return KeySpace(self.key_prefix)

    def to_json(self) -> str:
        """The snapshot as JSON (URLs in clear: pass it only to this machine's own processes)."""
        return json.dumps(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as plain values (JSON-ready), one key an attribute."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, text: str) -> SettingsSnapshot:
        """Read a snapshot written by :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SettingsSnapshot:
        """Read a snapshot from the plain values of :meth:`to_dict`."""
        return cls(**{**values, "run_mode": RunMode(values["run_mode"])})


if TYPE_CHECKING:
    #: Settings as a process has them: read and checked there, or handed over by ``aum worker``.
    Settings: TypeAlias = TaskSettings | SettingsSnapshot
