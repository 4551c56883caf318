"""Named singletons: ``TaskManager.get_instance(name)`` and ``SchedulerManager.get_instance(name)``.

One :class:`NamedInstances` registry a class, filled on first use. The TaskManagers' is made
here and bound by the class, which says how an instance is closed: lower layers that need the
default TaskManager (a handle made without one) ask :data:`task_managers` for it, with no import
of the layer it lives in. The SchedulerManagers' sits beside its class
(:data:`aury_tasks.scheduler.manager.schedulers`): nothing below it asks for one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class NamedInstances(Generic[T]):
    """The instances of one class by name, each made once, on first use, under a lock."""

    def __init__(self, kind: str) -> None:
        #: What the instances are, for the error when none can be made yet.
        self.kind = kind
        self._make: Callable[[str], T] | None = None
        self._close: Callable[[T], None] | None = None
        self._instances: dict[str, T] = {}
        self._lock = threading.Lock()

    def bind(self, make: Callable[[str], T], close: Callable[[T], None] | None = None) -> None:
        """Say how an instance is made from its name (and closed when it is forgotten)."""
        self._make, self._close = make, close

    def get(self, name: str = "default", make: Callable[[str], T] | None = None) -> T:
        """The instance called ``name``, the same object on every call.

        ``make``: how to make it if it does not exist yet (default: what :meth:`bind` said).

        Raises:
          LookupError: when it does not exist and nothing says how to make it.
        """
        with self._lock:
            instance = self._instances.get(name)
            if instance is None:
                make = make or self._make
                if make is None:
                    raise LookupError(f"no {self.kind} class is loaded")
                instance = self._instances[name] = make(name)
            return instance

    def reset(self, name: str | None = None) -> None:
        """Forget the instance called ``name`` (all of them when ``None``), closing each."""
        with self._lock:
            for key in list(self._instances) if name is None else [name]:
                instance = self._instances.pop(key, None)
                if instance is not None and self._close is not None:
                    self._close(instance)


#: The TaskManagers of this process (bound by :class:`~aury_tasks.tasks.manager.TaskManager`).
task_managers: NamedInstances[Any] = NamedInstances("TaskManager")
