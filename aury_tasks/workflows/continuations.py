"""What follows a group that fired, started off the worker's hot path, and taken over if its worker died.

A group member's join rides on its ack (one round trip for both, see
:class:`~aury_tasks.workflows.middleware.WorkflowSteps`). The join that fills the last slot
*fires* the group and, in the same Lua call, records the group as owed
(:meth:`~aury_tasks.core.keys.KeySpace.workflow_owed`).
The :class:`Continuations` thread of that worker process
then starts what follows and settles the debt. A worker that dies in between leaves the entry
behind; every worker's thread looks for entries older than the heartbeat timeout, takes them
over (re-scoring them, so one worker at a time) and starts what follows: doing it twice is
harmless, since a step whose first task has a record is not started again.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from loguru import logger

from ..core.redaction import redact_text
from .engine import carry_fired, workflow_state
from .state import JoinOutcome

if TYPE_CHECKING:
    from ..tasks.manager import TaskManager


@dataclass(frozen=True)
class _Fired:
    group_id: str
    outcome: JoinOutcome
    member_id: str


_STOP = object()


class Continuations(threading.Thread):
    """A worker process's thread starting what follows fired groups (its own, and orphans).

    Parameters:
      manager: the task manager of the worker's broker.
      stale_after: seconds after which a fired group whose continuation is still owed is taken over.
    """

    def __init__(self, manager: TaskManager, stale_after: float) -> None:
        super().__init__(name="aury-continuations", daemon=True)
        self.manager = manager
        self.stale_after = max(1.0, stale_after)
        self._queue: queue.Queue[object] = queue.Queue()

    def fired(self, group_id: str, outcome: JoinOutcome, member_id: str) -> None:
        """Start what follows ``group_id`` (from the thread acking its last member)."""
        self._queue.put(_Fired(group_id, outcome, member_id))

    def stop(self, timeout: float = 10.0) -> None:
        """Start what is queued, then stop."""
        self._queue.put(_STOP)
        self.join(timeout)

    def run(self) -> None:
        next_sweep = time.monotonic() + self.stale_after / 2
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, next_sweep - time.monotonic()))
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            if isinstance(item, _Fired):
                self._carry(item)
            if time.monotonic() >= next_sweep:
                self._take_over_orphans()
                next_sweep = time.monotonic() + self.stale_after / 2

    def _carry(self, fired: _Fired) -> None:
        try:
            carry_fired(self.manager, fired.group_id, fired.outcome, member_id=fired.member_id)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Still owed in Redis: a sweep (here or in another worker) starts it once Redis is back.
            logger.warning("could not start what follows group {} yet ({}); it will be taken over",
                           fired.group_id, redact_text(str(exc)))  # fmt: skip
        except Exception:
            logger.exception("starting what follows group {} failed", fired.group_id)

    def _take_over_orphans(self) -> None:
        try:
            state = workflow_state(self.manager)
            for group_id in state.claim_owed(self.stale_after):
                found = state.fired(group_id)
                if found is None:
                    state.settle(group_id)
                    continue
                outcome, member_id = found
                logger.info("starting what follows group {}: its worker did not", group_id)
                self._carry(_Fired(group_id, outcome, member_id))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            logger.debug("no sweep of owed workflow steps this time: {}", redact_text(str(exc)))
