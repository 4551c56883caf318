"""What the scheduler relies on inside APScheduler 3.x is still what it was built on.

``aury_tasks/scheduler/runner.py`` gives each run its planned time through an executor that
re-implements ``BasePoolExecutor._do_submit_job`` around APScheduler's ``run_job``. If an upgrade
changes either, this test fails and names it: read the new upstream code, adapt the runner, then
update the digest.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

import apscheduler
import pytest
from apscheduler.executors import base, pool

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
