"""What an endpoint is handed: the TaskManager, the SchedulerManager and the caller's access.

They do no I/O, so they are ``async``: FastAPI runs them on the event loop instead of handing
each to the thread pool (two hops a request less).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..scheduler.manager import SchedulerManager
from ..tasks.manager import TaskManager
from .auth import Access, authorize


async def task_manager(request: Request) -> TaskManager:
    """The app's TaskManager."""
    manager: TaskManager = request.app.state.task_manager
    return manager


async def scheduler_manager(request: Request) -> SchedulerManager:
    """The app's SchedulerManager."""
    scheduler: SchedulerManager = request.app.state.scheduler_manager
    return scheduler


Manager = Annotated[TaskManager, Depends(task_manager)]
Scheduler = Annotated[SchedulerManager, Depends(scheduler_manager)]
Caller = Annotated[Access, Depends(authorize)]
