"""``/api/v1/queues`` and ``/api/v1/workers``: queue depths, dead letters, live workers."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from ..auth import authorize
from ..deps import Caller, Manager
from ..schemas import QUEUE_PATTERN, Requeue
from ..views import dead_letter_view

router = APIRouter(prefix="/api/v1", tags=["queues"], dependencies=[Depends(authorize)])

QueueName = Annotated[str, Path(pattern=QUEUE_PATTERN)]


@router.get("/queues", summary="Every queue")
def queues(tm: Manager) -> dict[str, Any]:
    """Each queue known to the ledger, the workers or this process, with its counts."""
    return {"items": [dataclasses.asdict(stats) for stats in tm.queues()]}


@router.get("/queues/{name}/stats", summary="One queue")
def queue_stats(name: QueueName, tm: Manager) -> dict[str, Any]:
    """Waiting, delayed, running, dead, succeeded and failed tasks of the queue, and its workers."""
    return dataclasses.asdict(tm.queue_stats(name))


@router.get("/queues/{name}/dead-letters", summary="Dead letters of a queue")
def dead_letters(
    name: QueueName,
    tm: Manager,
    access: Caller,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Dead letters, newest first."""
    letters = tm.dead_letters(name)
    found = letters.list(limit=page_size, offset=(page - 1) * page_size)
    return {"items": [dead_letter_view(letter, access) for letter in found], "total": len(letters),
            "page": page, "page_size": page_size}  # fmt: skip


@router.post("/queues/{name}/dead-letters/requeue", summary="Requeue dead letters")
def requeue(name: QueueName, body: Requeue, tm: Manager) -> dict[str, Any]:
    """Send dead letters again as new tasks (the ids given, or all); old id -> new id."""
    handles = tm.dead_letters(name).requeue(body.task_ids)
    return {"requeued": {old: handle.id for old, handle in handles.items()}}


@router.delete("/queues/{name}/dead-letters", summary="Purge dead letters")
def purge(name: QueueName, tm: Manager) -> dict[str, Any]:
    """Delete every dead letter of the queue."""
    return {"purged": tm.dead_letters(name).purge()}


@router.get("/workers", summary="Live workers")
def workers(tm: Manager) -> dict[str, Any]:
    """Worker processes seen in the last 30 seconds."""
    return {"items": [dataclasses.asdict(worker) for worker in tm.workers()]}
