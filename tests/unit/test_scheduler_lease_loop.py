"""The scheduler's lease loop when Redis goes away while it takes the lead (a failover)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import redis

from aury_tasks.scheduler.runner import SchedulerRunner


class FlakyStore:
    """A schedule store in memory whose first read of the last runs finds Redis gone."""

    def __init__(self) -> None:
        self.failures = [redis.ConnectionError("Connection refused")]
        self.reads = 0

    def acquire_lease(self, holder: str, ttl: float) -> bool:
        return True

    def last_runs(self) -> dict[str, Any]:
        self.reads += 1
        if self.failures:
            raise self.failures.pop()
        return {}

    def all(self) -> list[Any]:
        return []


def test_a_scheduler_that_loses_redis_while_taking_the_lead_leads_once_it_answers() -> None:
    # Given a scheduler whose Redis fails while it loads its jobs on taking the lease
    store = FlakyStore()
    runner = SchedulerRunner(SimpleNamespace(store=store, declared={}), lease_ttl=1.0, renew_interval=0.01)  # type: ignore[arg-type]
    runner.scheduler.start(paused=True)
    loop = threading.Thread(target=runner._lease_loop, daemon=True)

    # When its lease loop runs
    loop.start()
    deadline = time.monotonic() + 10
    while not (runner.is_leader and store.reads >= 2) and time.monotonic() < deadline:
        time.sleep(0.01)
    runner._stopping.set()
    loop.join(5)
    runner.scheduler.shutdown(wait=False)

    # Then the loop lived through it (it used to end with a traceback, the process leading no more)
    # and took the lead on its next turn
    assert store.reads >= 2
    assert runner.is_leader
