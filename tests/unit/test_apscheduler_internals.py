"""What the scheduler relies on inside APScheduler 3.x is still what it was built on.

``aury_tasks/scheduler/runner.py`` gives each run its planned time through an executor that
re-implements ``BasePoolExecutor._do_submit_job`` around APScheduler's ``run_job``. If an upgrade
changes either, this test fails and names it: read the new upstream code, adapt the runner, then
update the digest.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import apscheduler
import pytest
from apscheduler.executors import base, pool
from apscheduler.schedulers.background import BackgroundScheduler

from aury_tasks.scheduler.runner import _PlannedTimeExecutor

#: (what, object, digest of its source)
RELIED_ON: list[tuple[str, Callable[..., Any], str]] = [
    ("BasePoolExecutor._do_submit_job", pool.BasePoolExecutor._do_submit_job, "90a86b19bc8b35ba"),
    ("run_job", base.run_job, "4ef7c5d4e3a61971"),
    ("BaseExecutor.submit_job", base.BaseExecutor.submit_job, "6856c7933692212c"),
]


@pytest.mark.parametrize(("what", "target", "digest"), RELIED_ON, ids=[r[0] for r in RELIED_ON])
def test_apscheduler_code_we_rely_on_is_unchanged(what: str, target: Callable[..., Any], digest: str) -> None:
    source = inspect.getsource(target).encode()
    assert hashlib.sha256(source).hexdigest()[:16] == digest, (
        f"APScheduler {apscheduler.__version__} changed {what}; check _PlannedTimeExecutor in"
        " aury_tasks/scheduler/runner.py, then update the digest here"
    )


def test_a_fire_that_finds_its_job_busy_waits_for_it_instead_of_being_dropped() -> None:
    # Given the scheduler's executor, and a job (max_instances=1) whose first send hangs
    release, planned = threading.Event(), []

    def send(planned_at: datetime | None = None) -> None:
        planned.append(planned_at)
        release.wait(10)

    scheduler = BackgroundScheduler(timezone=timezone.utc, executors={"default": _PlannedTimeExecutor(2)})
    scheduler.start(paused=True)
    try:
        job = scheduler.add_job(send, "interval", seconds=3600, max_instances=1, misfire_grace_time=60)
        executor = scheduler._lookup_executor("default")
        first, second = datetime.now(timezone.utc), datetime.now(timezone.utc)

        # When the next fire comes while the first is still sending
        executor.submit_job(job, [first])
        executor.submit_job(job, [second])  # APScheduler's own executor raises MaxInstancesReachedError

        # Then it waits its turn (one send at a time), and runs once the first is done
        pause = threading.Event()
        pause.wait(0.3)
        assert planned == [first]
        release.set()
        for _ in range(200):
            if len(planned) == 2:
                break
            pause.wait(0.05)
        assert planned == [first, second]
    finally:
        release.set()
        scheduler.shutdown(wait=True)
