"""The one place where aury-tasks errors live.

Every error derives from :class:`AuryTasksError`; its docstring is its default
message, so most errors are a docstring only. Errors the ``aum`` CLI turns into an
exit carry an ``exit_code``:

* ``2``: bad input or configuration (a setting, a JSON argument, an unknown task),
* ``3``: a task module failed to import,
* ``4``: the broker could not be reached or started,
* ``1``: anything else.
"""

from __future__ import annotations

from dramatiq.threading import Interrupt


class AuryTasksError(Exception):
    """An aury-tasks error occurred."""

    #: The exit code ``aum`` uses when this error ends a command.
    exit_code: int = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        """The error's message: one readable line."""
        return str(self.args[0]) if self.args else ""


class ConfigError(AuryTasksError, ValueError):
    """The configuration is invalid."""

    exit_code = 2


class DiscoveryError(AuryTasksError, ImportError):
    """A task module could not be imported."""

    exit_code = 3


class BrokerUnavailable(AuryTasksError, ConnectionError):
    """The broker could not be reached."""

    exit_code = 4


class ReplicationTimeout(BrokerUnavailable):
    """A write was not copied to ``TASK_BROKER_MIN_REPLICAS`` replicas in time: it may or may not be kept.

    Send again with the same ``idempotency_key=`` to have the task run once either way.
    """


class EmbeddedServerError(BrokerUnavailable):
    """The embedded Redis server could not be started."""


class AlertDeliveryFailed(AuryTasksError, ConnectionError):
    """The alert webhook could not be reached, or did not answer 2xx."""

    exit_code = 4


class TaskNotFound(AuryTasksError, LookupError):
    """No task is registered under that name."""

    exit_code = 2


class SerializationError(AuryTasksError, TypeError):
    """A task argument cannot be encoded as JSON."""

    exit_code = 2


class PayloadTooLarge(AuryTasksError, ValueError):
    """A message is larger than ``TASK_MAX_MESSAGE_BYTES``; nothing was sent."""

    exit_code = 2


class TaskOptionError(AuryTasksError, TypeError):
    """A task was declared with an invalid option."""

    exit_code = 2


class PermanentError(AuryTasksError):
    """The task failed in a way that retrying cannot fix.

    Raise it (or a subclass) from a task to fail at once, without retries:

        >>> @tm.conditional_task(max_retries=5)
        ... def charge(order_id: str) -> None:
        ...     if not order_exists(order_id):
        ...         raise PermanentError(f"order {order_id} does not exist")
    """


class TaskFailed(AuryTasksError):
    """The task failed."""

    def __init__(self, message: str | None = None, *, error_type: str = "", error_message: str = "") -> None:
        super().__init__(message)
        #: The remote exception's type name, e.g. ``"ValueError"`` (a string, never a class).
        self.error_type = error_type
        #: The remote exception's message.
        self.error_message = error_message


class TaskCancelled(TaskFailed):
    """The task was cancelled before it finished."""


class TaskExpired(TaskFailed):
    """The task was dequeued after its ``expires`` moment and not run."""


class TaskRecordNotFound(AuryTasksError, LookupError):
    """No task with that id is known (never sent, or its record expired)."""

    @classmethod
    def for_id(cls, task_id: str) -> TaskRecordNotFound:
        """The error for an unknown ``task_id``, in the words every caller uses."""
        return cls(f"no task with id {task_id} (never sent, or its record expired)")


class SchedulerError(ConfigError):
    """A scheduled job is invalid: its trigger, its task or its options (exit code 2)."""


class ScheduledJobNotFound(SchedulerError, LookupError):
    """No scheduled job has that id (exit code 2)."""


class BrokerFeatureUnsupported(ConfigError):
    """The broker cannot do this (docs/operating.md, Brokers, lists what each broker can do)."""

    def __init__(self, feature: str, broker: str, instead: str = "") -> None:
        """``feature`` (what was asked) is not supported on ``broker``; ``instead``: what to do."""
        self.feature, self.broker = feature, broker
        tail = f"; {instead}" if instead else ""
        super().__init__(
            f"{feature} is not supported on a {broker} broker{tail} (docs/operating.md, Brokers)"
        )


class LedgerUnavailable(ConfigError):
    """Task state is not kept: it needs a Redis (``TASK_RESULT_BACKEND_URL``) and ``TASK_TRACK_STATE``."""


class TaskInterrupted(Interrupt):
    """Raised inside a running task that was cancelled with ``tm.cancel``.

    A sync task sees it at once, the way Dramatiq interrupts a task over its time limit; an
    async task gets ``asyncio.CancelledError`` at its next ``await``. Catch it only to clean up,
    then re-raise it.
    """


class SoftTimeLimitExceeded(AuryTasksError):
    """The task ran past its soft time limit (``soft_timeout``).

    Raised inside a running task once its ``soft_timeout`` has passed, before ``timeout`` stops
    it for good: a sync task gets it in its thread, an async task at the ``await`` where it waits
    (as a cancellation: it is also an ``asyncio.CancelledError`` there). Catch it to clean up; a
    task that then returns has succeeded, one that lets it escape has failed and is retried like
    any failure:

        >>> @tm.conditional_task(soft_timeout=540, timeout=600)
        ... def export(report_id: str) -> str:
        ...     try:
        ...         return build(report_id)
        ...     except SoftTimeLimitExceeded:
        ...         remove_partial_files(report_id)
        ...         return "cleaned"
    """


class TaskStateError(AuryTasksError):
    """The task is not in a state that allows this."""
