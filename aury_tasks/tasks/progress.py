"""``report_progress``: a running task tells its followers how far it has come."""

from __future__ import annotations

import time

from ..ledger.records import Progress
from ..middleware.ledger import TaskRun, current_run


def report_progress(
    percent: float, message: str = "", step: int | None = None, total_steps: int | None = None
) -> bool:
    """Record how far the running task has come; subscribers get the update at once.

    Call it from inside a task, sync or async: it finds the task it runs in. In eager mode, or
    when task state is not kept, it does nothing.

    Parameters:
      percent: 0 to 100.
      message: what the task is doing now.
      step, total_steps: e.g. step 3 of 10.

    Returns:
      bool: whether the update was stored (``False`` once the task has been cancelled).

    Raises:
      RuntimeError: when called outside a task.
      ValueError: for a percent outside 0 to 100.

    >>> @tm.conditional_task
    ... async def import_rows(path: str) -> int:
    ...     for done, chunk in enumerate(chunks(path), 1):
    ...         await load(chunk)
    ...         report_progress(100 * done / total, f"chunk {done}", step=done, total_steps=total)
    """
    if not 0 <= percent <= 100:
        raise ValueError(f"percent must be from 0 to 100, got {percent}")
    run: TaskRun | None = current_run.get()
    if run is None:
        raise RuntimeError("report_progress() is called from inside a running task")
    ledger = run.ledger
    if ledger is None or ledger.store is None:
        return False
    progress = Progress(float(percent), message, step, total_steps, time.time())
    return ledger.report(run, ledger.store.progress_write(run.task_id, progress))
