"""What ``aum worker`` hands the processes it starts: one typed object, in one environment variable.

``aum worker`` (and ``aum run``) reads and checks the settings, imports the task modules and
works out the queues; then it writes a :class:`WorkerSetup` to :data:`SETUP_ENV` as JSON and
becomes Dramatiq's supervisor, whose worker processes (and ``aum run``'s scheduler process)
take it back with :meth:`WorkerSetup.take`. Each process removes the variable as it reads it,
so the programs its tasks start do not inherit the settings (URLs in clear among them).

Not in it, because they are read elsewhere: Dramatiq's own variables, which it reads when it is
imported (``dramatiq_queue_prefetch``; the ``dramatiq_prom_*`` ones of
:mod:`aury_tasks.worker.metrics`), and the settings ``TASK_RUN_MODE`` and ``TASK_MODULES_DIR``,
which ``aum worker`` sets for every TaskManager of its process tree (see
:func:`aury_tasks.cli.worker.enter_worker_mode`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config.snapshot import SettingsSnapshot
from ..core.errors import ConfigError

#: The environment variable carrying the set-up to the worker processes (read once, then removed).
SETUP_ENV = "AURY_TASKS_WORKER_SETUP"
#: The version of the set-up's JSON form; a process refuses a set-up of another version.
SETUP_VERSION = 1


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a process started by ``aum worker``'s supervisor needs to boot.

    A process reads nothing else of its parent's: not the settings again (no pydantic where
    tasks run), nor the command line.
    """

    #: The settings ``aum worker`` checked.
    settings: SettingsSnapshot
    #: The queues given with ``-q`` (declared by a task or not), in their order; empty: none given.
    queues: tuple[str, ...] = ()
    #: The queues with a limit (``-q NAME:N``): name -> ``(threads, prefetch)`` of its lane.
    queue_limits: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    #: ``aum run --lease-ttl``, for its scheduler process (``None`` under ``aum worker``).
    scheduler_lease_ttl: float | None = None

    def to_json(self) -> str:
        """The set-up as JSON, with its version (URLs in clear: pass it only to this machine's processes)."""
        return json.dumps({
            "version": SETUP_VERSION,
            "settings": self.settings.to_dict(),
            "queues": list(self.queues),
            "queue_limits": {name: list(limit) for name, limit in self.queue_limits.items()},
            "scheduler_lease_ttl": self.scheduler_lease_ttl,
        })  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> WorkerSetup:
        """Read a set-up written by :meth:`to_json`.

        Raises:
          ConfigError: ``text`` is not a set-up of this version.
        """
        try:
            values: dict[str, Any] = json.loads(text)
            version = values.pop("version", None)
            if version != SETUP_VERSION:
                raise ConfigError(
                    f"invalid worker set-up in {SETUP_ENV}: version {version!r}, this aury-tasks "
                    f"reads version {SETUP_VERSION} (restart aum worker)"
                )
            limits = {str(name): (int(threads), int(prefetch))
                      for name, (threads, prefetch) in values["queue_limits"].items()}  # fmt: skip
            return cls(
                settings=SettingsSnapshot.from_dict(values["settings"]),
                queues=tuple(str(name) for name in values["queues"]),
                queue_limits=limits,
                scheduler_lease_ttl=values["scheduler_lease_ttl"],
            )
        except ConfigError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"invalid worker set-up in {SETUP_ENV}: {type(exc).__name__}: {exc}") from None

    def export(self) -> None:
        """Put the set-up where the processes started after this (forked or spawned) read it."""
        os.environ[SETUP_ENV] = self.to_json()

    @classmethod
    def take(cls) -> WorkerSetup:
        """The set-up this process was started with, removed from its environment.

        Raises:
          ConfigError: there is none (the process was not started by ``aum worker`` or ``aum run``),
            or it is malformed.
        """
        given = os.environ.pop(SETUP_ENV, None)  # not left for the tasks' own subprocesses
        if given is None:
            raise ConfigError(f"no worker set-up in {SETUP_ENV}: worker processes are started by "
                              "`aum worker` or `aum run`")  # fmt: skip
        return cls.from_json(given)
