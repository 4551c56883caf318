"""``/api/v1/task-names``: the tasks this server can send, as ``aum tasks`` lists them."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter, Depends

from ..auth import authorize
from ..deps import Manager

router = APIRouter(prefix="/api/v1", tags=["tasks"], dependencies=[Depends(authorize)])


@router.get("/task-names", summary="Registered tasks")
def task_names(tm: Manager) -> dict[str, Any]:
    """Every task registered in this server's task modules (only these can be sent by name),
    with its queue, retries, time limit, kind and parameters, sorted by name."""
    return {
        "items": [
            {
                "name": task.name,
                "short_name": task.name.rsplit(".", 1)[-1],
                "queue": task.queue_name,
                "max_retries": task.max_retries,
                "timeout": task.timeout,
                "kind": "async" if task.is_async else "sync",
                "parameters": list(inspect.signature(task.fn).parameters),
            }
            for task in sorted(tm.tasks.values(), key=lambda task: task.name)
        ]
    }
