"""Settings: ``TaskSettings``, read from ``TASK_*`` environment variables and ``.env``.

A wrong value raises :class:`~aury_tasks.core.errors.ConfigError` with one line that names
the variable and the form it expects; URLs in settings are ``SecretStr`` and only ever
shown with their password masked (:func:`redact_url`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..core.errors import ConfigError
from ..core.keys import DEFAULT_PREFIX, KeySpace, prefix_problem
from ..core.redaction import redact_url
from ..core.run_mode import RunMode
from ..core.sentinel_url import SENTINEL_SCHEMES, is_sentinel_url, parse_sentinel_url
from .alert_rules import parse_rules
from .snapshot import SettingsSnapshot

#: Broker URL schemes aury-tasks understands.
BROKER_SCHEMES = ("redis", "rediss", "unix", *SENTINEL_SCHEMES, "amqp", "amqps", "memory")
#: Result backend URL schemes (the ledger lives in Redis).
RESULT_BACKEND_SCHEMES = ("redis", "rediss", "unix", *SENTINEL_SCHEMES)
#: The form of a sentinel URL, as an error names it.
SENTINEL_FORM = "redis+sentinel://[:password@]host:26379[,host:26379...]/MASTER_NAME/DB"
#: The URL settings and the schemes each accepts.
_URL_SCHEMES = {
    "broker_url": BROKER_SCHEMES,
    "result_backend_url": RESULT_BACKEND_SCHEMES,
    "alert_webhook_url": ("http", "https"),
}


def _expected(form: str) -> Any:
    """What a field's ``ConfigError`` says it expects (read by :func:`_config_error`)."""
    return {"expected": form}


def _seconds(default: float, description: str) -> Any:
    """A field of seconds, above 0."""
    return Field(
        default=default,
        gt=0,
        description=description,
        json_schema_extra=_expected(f"a number of seconds greater than 0, e.g. {default}"),
    )


def _flag(default: bool, description: str) -> Any:
    """A true-or-false field."""
    return Field(default=default, description=description, json_schema_extra=_expected("true or false"))


class TaskSettings(BaseSettings):
    """aury-tasks configuration, from ``TASK_*`` variables and ``.env`` in the working directory.

    Every field maps to an environment variable: ``broker_url`` is ``TASK_BROKER_URL``.
    """

    model_config = SettingsConfigDict(
        env_prefix="TASK_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    broker_url: SecretStr | None = Field(
        default=None,
        description="Broker URL; unset starts the embedded Redis under TASK_DATA_DIR.",
        json_schema_extra=_expected("a URL starting with " + ", ".join(f"{s}://" for s in BROKER_SCHEMES)),
    )
    result_backend_url: SecretStr | None = Field(
        default=None,
        description="Redis URL for task state and results; unset uses the broker's Redis.",
        json_schema_extra=_expected(
            "a URL starting with " + ", ".join(f"{s}://" for s in RESULT_BACKEND_SCHEMES)
        ),
    )
    sentinel_password: SecretStr | None = Field(
        default=None,
        description="Password of the Redis Sentinels of a redis+sentinel:// URL "
        "(the master's own is the URL's).",
        json_schema_extra=_expected("text"),
    )
    key_prefix: str = Field(
        default=DEFAULT_PREFIX,
        description="Prefix of every Redis key of aury-tasks and of its broker (<prefix>:...): two "
        "applications with different prefixes share one Redis; an ACL user can be limited to ~<prefix>:*.",
        json_schema_extra=_expected(
            "a prefix without spaces, glob characters (* ? [ ] \\) or a trailing "
            "colon, e.g. aury or shop-staging"
        ),
    )
    broker_min_replicas: int = Field(
        default=0,
        ge=0,
        le=16,
        description="Replicas a send, a retry's re-enqueue and an acknowledgement wait for (Redis WAIT) "
        "before they return, so that a failover loses none acknowledged (0: no wait).",
        json_schema_extra=_expected("a whole number from 0 to 16"),
    )
    broker_replica_timeout_ms: int = Field(
        default=1000,
        ge=1,
        le=60_000,
        description="Milliseconds a write waits for TASK_BROKER_MIN_REPLICAS replicas; then the send "
        "raises BrokerUnavailable (it may or may not be kept).",
        json_schema_extra=_expected("a whole number of milliseconds from 1 to 60000"),
    )
    queue_name: str = Field(
        default="default",
        description="Queue of tasks that name none.",
        json_schema_extra=_expected("a queue name of letters, digits, '.', '_' or '-'"),
    )
    max_workers: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Tasks one worker process runs at once (threads); `aum worker -c` overrides.",
        json_schema_extra=_expected("a whole number from 1 to 1024"),
    )
    max_tasks_per_child: int = Field(
        default=0,
        ge=0,
        description="Tasks a worker process runs before a fresh one replaces it (0: never); "
        "`aum worker --max-tasks-per-child` overrides.",
        json_schema_extra=_expected("a whole number, 0 or more"),
    )
    max_memory_per_child: int = Field(
        default=0,
        ge=0,
        description="Resident memory in MiB past which a worker process is replaced after its "
        "running tasks (0: never); `aum worker --max-memory-per-child` overrides.",
        json_schema_extra=_expected("a whole number of MiB, 0 or more"),
    )
    timeout: float = _seconds(600, "Default time limit of a task, in seconds.")
    max_retries: int = Field(
        default=3,
        ge=0,
        description="Default number of retries after a failure.",
        json_schema_extra=_expected("a whole number, 0 or more"),
    )
    retry_delay: float = _seconds(30, "First retry delay in seconds; later ones double, with jitter.")
    max_retry_delay: float = Field(
        default=3600,
        gt=0,
        le=7 * 86400,
        description="Cap on the retry delay, in seconds (at most 7 days).",
        json_schema_extra=_expected("a number of seconds from 0 to 604800, e.g. 3600"),
    )
    heartbeat_timeout: float = Field(
        default=15,
        ge=1,
        description="Seconds without a heartbeat before a worker is taken for dead and its "
        "unacknowledged messages are given to others.",
        json_schema_extra=_expected("a number of seconds, 1 or more, e.g. 15"),
    )
    max_message_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest message a send may write, in bytes (its arguments encoded as JSON, with "
        "the message's envelope); a larger one raises PayloadTooLarge before anything is written.",
        json_schema_extra=_expected("a number of bytes, 1024 or more, e.g. 1048576"),
    )
    max_deliveries: int = Field(
        default=5,
        ge=1,
        description="Deliveries of a message that may end with their worker dead (killed, out of "
        "memory) before the message is dead-lettered with the reason redelivery_limit.",
        json_schema_extra=_expected("a whole number, 1 or more, e.g. 5"),
    )
    rabbitmq_queue_type: Literal["classic", "quorum"] = Field(
        default="classic",
        description="Type of the queues a RabbitMQ broker declares (also ?queue_type= in "
        "TASK_BROKER_URL): quorum queues are replicated across a RabbitMQ cluster.",
        json_schema_extra=_expected("classic or quorum"),
    )
    rabbitmq_max_priority: int = Field(
        default=0,
        ge=0,
        le=255,
        description="x-max-priority of the classic queues a RabbitMQ broker declares, so that task "
        "priorities are honoured; 0: none (a send with a priority then fails).",
        json_schema_extra=_expected("a whole number from 0 to 255, e.g. 9"),
    )
    rabbitmq_consumer_timeout_ms: int = Field(
        default=1_800_000,
        ge=0,
        description="The RabbitMQ server's consumer_timeout (ms), which a client cannot read: a "
        "worker warns at start about tasks whose time limit is longer; 0: none on the server.",
        json_schema_extra=_expected("a number of milliseconds, 0 or more, e.g. 1800000"),
    )
    track_state: bool = _flag(True, "Keep a record of every task (status, result, progress) in Redis.")
    result_ttl: float = _seconds(
        7 * 86400, "Seconds a task's record and result are kept after its last change."
    )
    scheduler_timezone: str = Field(
        default="UTC",
        description="Timezone of scheduled jobs that name none (an IANA name).",
        json_schema_extra=_expected("an IANA timezone name, e.g. UTC or Europe/Paris"),
    )
    scheduler_misfire_grace_time: float = _seconds(
        30, "Seconds after its planned time a scheduled fire may still happen."
    )
    scheduler_coalesce: bool = _flag(
        True, "Fire a job that missed several runs once, not once per missed run."
    )
    scheduler_max_instances: int = Field(
        default=1,
        ge=1,
        description="Fires of one job that may be in flight at once.",
        json_schema_extra=_expected("a whole number, 1 or more"),
    )
    modules_dir: str = Field(
        default="modules",
        description="Directory whose <name>/tasks package or tasks.py files `aum` imports.",
        json_schema_extra=_expected("a directory path"),
    )
    data_dir: str = Field(
        default=".aum",
        description="Where the embedded Redis keeps its socket, data and AOF.",
        json_schema_extra=_expected("a directory path"),
    )
    log_level: str = Field(
        default="INFO",
        description="Lowest level logged.",
        json_schema_extra=_expected("one of TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL"),
    )
    log_json: bool = _flag(False, "Log one JSON object a line.")
    run_mode: RunMode = Field(
        default=RunMode.PRODUCER,
        description="What decorated tasks become outside `aum worker`.",
        json_schema_extra=_expected("one of worker, producer, eager"),
    )

    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port on which `aum worker` serves its worker processes' Prometheus metrics "
        "(0: not served).",
        json_schema_extra=_expected("a port number from 1 to 65535, or 0 for none"),
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the worker's metrics port listens on (0.0.0.0 for every interface).",
        json_schema_extra=_expected("an IP address or host name, e.g. 127.0.0.1"),
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of `aum serve` with full access (send, cancel, schedules, "
        "task arguments and results).",
        json_schema_extra=_expected("text of 16 characters or more"),
    )
    api_read_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of `aum serve` for reading only (GET requests; no arguments or results).",
        json_schema_extra=_expected("text of 16 characters or more"),
    )
    api_max_body_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="Largest request body `aum serve` accepts, in bytes.",
        json_schema_extra=_expected("a number of bytes, 1024 or more, e.g. 2097152"),
    )
    api_cors_origins: str = Field(
        default="",
        description="Comma-separated origins whose browsers may call the API (empty: CORS off).",
        json_schema_extra=_expected("origins like https://ops.example.com, separated by commas"),
    )
    alert_webhook_url: SecretStr | None = Field(
        default=None,
        description="URL the scheduler leader POSTs alerts to as JSON (unset: alerts are only logged).",
        json_schema_extra=_expected("a URL starting with http:// or https://"),
    )
    alert_secret: SecretStr | None = Field(
        default=None,
        description="Key of the alerts' X-Aury-Signature header (HMAC-SHA256 of the body; unset: unsigned).",
        json_schema_extra=_expected("text"),
    )
    alert_interval: float = _seconds(
        15, "Seconds between two evaluations of the alert rules by the scheduler leader."
    )
    alert_rules: str = Field(
        default="",
        description="Alert rules as a JSON list (docs/alerts.md), besides those of `aum alerts add`.",
        json_schema_extra=_expected('a JSON list of alert rules, e.g. [{"name": "x", "kind": "backlog"}]'),
    )

    @field_validator(
        *_URL_SCHEMES, "alert_secret", "sentinel_password", "api_token", "api_read_token", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(*_URL_SCHEMES)
    @classmethod
    def _check_url_scheme(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            return None
        scheme = urlsplit(value.get_secret_value()).scheme.lower()
        if scheme not in _URL_SCHEMES[str(info.field_name)]:
            raise ValueError(f"unsupported scheme {scheme!r}")
        if is_sentinel_url(value.get_secret_value()):
            try:
                parse_sentinel_url(value.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"{SENTINEL_FORM} ({exc})") from None
        return value

    @field_validator("alert_rules")
    @classmethod
    def _check_alert_rules(cls, value: str) -> str:
        try:
            parse_rules(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("api_token", "api_read_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("token too short")
        return value

    @field_validator("key_prefix")
    @classmethod
    def _check_key_prefix(cls, value: str) -> str:
        problem = prefix_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("queue_name")
    @classmethod
    def _check_queue_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9._-]*", value):
            raise ValueError("invalid queue name")
        return value

    @field_validator("scheduler_timezone")
    @classmethod
    def _check_scheduler_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _check_log_level(cls, value: Any) -> Any:
        level = str(value).strip().upper()
        if level not in {"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("unknown log level")
        return level

    @classmethod
    def load(cls, **overrides: Any) -> TaskSettings:
        """Read the settings, turning a validation error into one-line :class:`ConfigError`.

        Raises:
          ConfigError: naming the first wrong variable and the form it expects.
        """
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise _config_error(exc) from None

    @property
    def keys(self) -> KeySpace:
        """The keys under :attr:`key_prefix` (``TASK_KEY_PREFIX``)."""
        return KeySpace(self.key_prefix)

    @property
    def broker_url_value(self) -> str | None:
        """The broker URL in clear, for building connections (never log it)."""
        return self.broker_url.get_secret_value() if self.broker_url else None

    @property
    def result_backend_url_value(self) -> str | None:
        """The result backend URL in clear, or ``None`` to use the broker's Redis."""
        return self.result_backend_url.get_secret_value() if self.result_backend_url else None

    @property
    def sentinel_password_value(self) -> str | None:
        """The sentinels' password in clear, for connecting to them (never log it)."""
        return self.sentinel_password.get_secret_value() if self.sentinel_password else None

    @property
    def alert_webhook_url_value(self) -> str | None:
        """The alert webhook URL in clear, for POSTing (never log it: :func:`redact_url`)."""
        return self.alert_webhook_url.get_secret_value() if self.alert_webhook_url else None

    def snapshot(self) -> SettingsSnapshot:
        """These settings as plain values, for a process that is not to load pydantic (a worker).

        The ``api_*`` settings (tokens among them) are those of ``aum serve``, not handed over.
        The alert webhook URL and secret are, in clear (as the URLs), under ``repr=False``.
        """
        plain = {
            name: getattr(self, name)
            for name in type(self).model_fields
            if not name.endswith("_url") and not name.startswith("api_") and name != "sentinel_password"
        }
        plain["alert_secret"] = self.alert_secret.get_secret_value() if self.alert_secret else None
        return SettingsSnapshot(
            broker_url_value=self.broker_url_value,
            result_backend_url_value=self.result_backend_url_value,
            sentinel_password_value=self.sentinel_password_value,
            alert_webhook_url_value=self.alert_webhook_url_value,
            **plain,
        )


def _config_error(exc: ValidationError) -> ConfigError:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    info = TaskSettings.model_fields.get(field)
    variable = f"TASK_{field.upper()}"
    expected = ""
    if info is not None and isinstance(info.json_schema_extra, dict):
        expected = str(info.json_schema_extra.get("expected", ""))
    detail = str(error["msg"]).removeprefix("Value error, ")
    if detail.startswith(SENTINEL_FORM):
        expected = detail  # the sentinel URL's form and what is wrong with it
    got = error.get("input")
    shown = redact_url(got) if field.endswith("_url") and isinstance(got, str) else got
    if field.endswith(("_token", "_password")):
        shown = None  # a secret: never echoed, even when wrong
    got_text = f", got {shown!r}" if isinstance(shown, (str, int, float)) else ""
    return ConfigError(f"invalid setting {variable}: expected {expected or error['msg']}{got_text}")


@lru_cache(maxsize=1)
def get_settings() -> TaskSettings:
    """Return the process-wide settings, read once (``get_settings.cache_clear()`` re-reads)."""
    return TaskSettings.load()
