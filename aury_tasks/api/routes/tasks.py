"""``/api/v1/tasks``: send, list, read, follow, cancel and retry tasks; statistics."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import Response, StreamingResponse

from ...core.status import TaskStatus
from ...ledger.events import TaskEvent
from ..auth import Access, authorize
from ..deps import Caller, Manager
from ..schemas import SendTask, aware
from ..views import json_answer, progress_view, record_view, result_view

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"], dependencies=[Depends(authorize)])

#: Seconds between keep-alive comments of an event stream (proxies close silent connections).
KEEPALIVE = 15.0
_DAY = 86400.0

Moment = Annotated[datetime | None, Query(description="UNIX seconds or ISO 8601 (UTC without a zone).")]


@router.post("", status_code=201, summary="Send a task")
def send_task(body: SendTask, tm: Manager, access: Caller) -> dict[str, Any]:
    """Enqueue a registered task; answers its record as just written."""
    task = tm.get_task(body.task)
    task.check_arguments(body.args, body.kwargs)
    options: dict[str, Any] = {}
    if body.max_retries is not None:
        options["max_retries"] = body.max_retries
    if body.timeout is not None:
        options["time_limit"] = int(body.timeout * 1000)
    handle = task.send_with_options(
        args=body.args, kwargs=body.kwargs, queue_name=body.queue, priority=body.priority, delay=body.delay,
        eta=body.eta, expires=body.expires, metadata=body.metadata or None, **options,
    )  # fmt: skip
    return record_view(tm.task_record(handle.id), access)


@router.get("", summary="List tasks")
async def list_tasks(
    tm: Manager,
    access: Caller,
    queue: Annotated[str | None, Query(max_length=200)] = None,
    status: TaskStatus | None = None,
    task: Annotated[str | None, Query(max_length=500, description="A task's full name.")] = None,
    since: Moment = None,
    until: Moment = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """Records, newest first, filtered by queue, status, task name and enqueue time."""
    # One script call on the event loop (no thread-pool hop): see benchmarks/api.py.
    found = await tm.list_tasks_async(status=status, queue=queue, task_name=task, since=aware(since),
                                      until=aware(until), page=page, page_size=page_size)  # fmt: skip
    return json_answer({
        "items": [record_view(record, access) for record in found.items],
        "total": found.total,
        "page": found.page,
        "page_size": found.page_size,
        "pages": found.pages,
    })  # fmt: skip


@router.get("/statistics", summary="Statistics of a time window")
def statistics(
    tm: Manager,
    start_time: Moment = None,
    end_time: Moment = None,
    queue: Annotated[str | None, Query(max_length=200)] = None,
    task: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """Counts, success rate and durations of the tasks that ended in the window (default: 24 h)."""
    end = aware(end_time).timestamp() if end_time else time.time()  # type: ignore[union-attr]
    start = aware(start_time).timestamp() if start_time else end - _DAY  # type: ignore[union-attr]
    if start >= end:
        raise HTTPException(422, "start_time must be before end_time")
    return vars(tm.statistics(start, end, queue=queue, task_name=task))


@router.get("/throughput", summary="Tasks ended over time")
def throughput(
    tm: Manager,
    span: Annotated[int, Query(ge=60, le=31 * 86400, description="Seconds back from now.")] = 3600,
    points: Annotated[int, Query(ge=1, le=1440)] = 60,
    queue: Annotated[str | None, Query(max_length=200)] = None,
    task: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """The counts of ``points`` equal slices of the last ``span`` seconds, oldest first (for charts)."""
    end = time.time()
    series = tm.statistics_series(end - span, end, points, queue=queue, task_name=task)
    fields = ("start", "end", "total", "succeeded", "failed", "cancelled", "expired", "dead")
    return {"span": span, "points": [{name: getattr(point, name) for name in fields} for point in series]}


@router.get("/{task_id}", summary="A task's record")
async def get_task(task_id: str, tm: Manager, access: Caller) -> Response:
    """Everything the ledger knows about the task."""
    # One HGETALL on the event loop rather than a hop to the thread pool: ~10 % less CPU a call and
    # a shorter tail at 200 requests/s (benchmarks/api.py).
    return json_answer(record_view(await tm.task_record_async(task_id), access))


@router.get("/{task_id}/result", summary="A task's result")
def get_result(task_id: str, tm: Manager, access: Caller) -> dict[str, Any]:
    """The result of an ended task, or the error it ended with (``ready`` false until it ends)."""
    return result_view(tm.task_record(task_id), access)


@router.get("/{task_id}/progress", summary="A task's progress")
def get_progress(task_id: str, tm: Manager) -> dict[str, Any]:
    """The task's status and last progress report."""
    status = tm.task_status(task_id)
    return {"id": task_id, "status": status.value, "progress": progress_view(tm.task_progress(task_id))}


@router.get(
    "/{task_id}/events",
    summary="Follow a task (server-sent events)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def follow(task_id: str, tm: Manager, access: Caller) -> StreamingResponse:
    """``status`` events (the record) at once and on each change, ``progress`` events on each
    report, then ``end`` after the final status; a comment every 15 s keeps the stream open."""
    events = tm.follow_async(task_id, keepalive=KEEPALIVE)
    first = await anext(events)  # an unknown id is a 404 here, before the stream starts
    return StreamingResponse(
        _stream(first, events, access),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.delete("/{task_id}", summary="Cancel a task")
def cancel(task_id: str, tm: Manager) -> dict[str, Any]:
    """Cancel the task durably (``cancelled`` false: it had already ended)."""
    cancelled = tm.cancel(task_id)
    return {"id": task_id, "cancelled": cancelled, "status": tm.task_status(task_id).value}


@router.post("/{task_id}/retry", status_code=201, summary="Retry a task")
def retry(task_id: str, tm: Manager, access: Caller) -> dict[str, Any]:
    """Send a failed, dead, cancelled or expired task again as a new task linked to this one."""
    handle = tm.retry(task_id)
    return record_view(tm.task_record(handle.id), access)


async def _stream(first: TaskEvent, events: AsyncIterator[TaskEvent], access: Access) -> AsyncIterator[str]:
    yield _event(first, access)
    async for event in events:
        yield _event(event, access)
    yield "event: end\ndata: {}\n\n"


def _event(event: TaskEvent, access: Access) -> str:
    if event.kind == "idle":
        return ": keep-alive\n\n"
    if event.kind == "progress":
        data = progress_view(event.progress)
    else:
        assert event.record is not None
        data = record_view(event.record, access)
    return f"event: {event.kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
