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


class EmbeddedServerError(BrokerUnavailable):
    """The embedded Redis server could not be started."""


class TaskNotFound(AuryTasksError, LookupError):
    """No task is registered under that name."""

    exit_code = 2


class SerializationError(AuryTasksError, TypeError):
    """A task argument cannot be encoded as JSON."""

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
