"""``/api/v1/scheduled-tasks`` and ``/api/v1/scheduler``: scheduled jobs and the scheduler."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Response

from ..auth import authorize
from ..deps import Caller, Manager, Scheduler
from ..schemas import JOB_NAME_PATTERN, AddJob, ChangeJob, CheckCron
from ..views import job_view, record_view, seconds

router = APIRouter(prefix="/api/v1", tags=["schedules"], dependencies=[Depends(authorize)])

JobName = Annotated[str, Path(pattern=JOB_NAME_PATTERN)]
_OPTIONS = ("coalesce", "max_instances", "misfire_grace_time", "jitter")


@router.post("/scheduled-tasks", status_code=201, summary="Add a scheduled job")
def add_job(body: AddJob, scheduler: Scheduler, access: Caller) -> dict[str, Any]:
    """Schedule a registered task (``409`` if a job has that name: change it with ``PUT``)."""
    scheduler.task_manager.get_task(body.task).check_arguments(body.args, body.kwargs)
    if scheduler.store.get(body.name) is not None:
        raise HTTPException(409, f"a scheduled job {body.name!r} exists already; change it with PUT")
    job = scheduler.add_job(
        body.task, id=body.name, args=body.args, kwargs=body.kwargs, paused=body.paused,
        **{name: getattr(body, name) for name in _OPTIONS}, **body.trigger_arguments(),
    )  # fmt: skip
    return _job(scheduler, job.id, access)


@router.get("/scheduled-tasks", summary="Every scheduled job")
def list_jobs(scheduler: Scheduler, access: Caller) -> dict[str, Any]:
    """Jobs with their next run, last run and the status of the task it sent."""
    return {"items": [job_view(info.job, access, info) for info in scheduler.list_jobs()]}


@router.get("/scheduled-tasks/{name}", summary="A scheduled job")
def get_job(name: JobName, scheduler: Scheduler, access: Caller) -> dict[str, Any]:
    """The job with its next and last run."""
    return _job(scheduler, name, access)


@router.put("/scheduled-tasks/{name}", summary="Change a scheduled job")
def change_job(name: JobName, body: ChangeJob, scheduler: Scheduler, access: Caller) -> dict[str, Any]:
    """Change the job's trigger, arguments, options or paused state (what is given)."""
    trigger = body.trigger_arguments()
    options = {name: getattr(body, name) for name in _OPTIONS}
    if (
        trigger
        or body.args is not None
        or body.kwargs is not None
        or any(v is not None for v in options.values())
    ):
        scheduler.update_job(name, args=body.args, kwargs=body.kwargs, **options, **trigger)
    if body.paused is not None:
        (scheduler.pause_job if body.paused else scheduler.resume_job)(name)
    return _job(scheduler, name, access)


@router.delete("/scheduled-tasks/{name}", status_code=204, summary="Remove a scheduled job")
def remove_job(name: JobName, scheduler: Scheduler) -> Response:
    """Delete the job."""
    scheduler.remove_job(name)
    return Response(status_code=204)


@router.post("/scheduled-tasks/{name}/pause", summary="Pause a scheduled job")
def pause_job(name: JobName, scheduler: Scheduler, access: Caller) -> dict[str, Any]:
    """Stop firing the job until it is resumed."""
    scheduler.pause_job(name)
    return _job(scheduler, name, access)


@router.post("/scheduled-tasks/{name}/resume", summary="Resume a scheduled job")
def resume_job(name: JobName, scheduler: Scheduler, access: Caller) -> dict[str, Any]:
    """Fire the job again from its next planned time."""
    scheduler.resume_job(name)
    return _job(scheduler, name, access)


@router.post("/scheduled-tasks/{name}/run", status_code=201, summary="Run a scheduled job now")
def run_job(name: JobName, scheduler: Scheduler, tm: Manager, access: Caller) -> dict[str, Any]:
    """Send the job's task now, once (its planned fires are unchanged); answers the task."""
    handle = scheduler.run_job_now(name)
    return record_view(tm.task_record(handle.id), access)


@router.post("/scheduler/validate-cron", summary="Check a cron expression")
def validate_cron(body: CheckCron, scheduler: Scheduler) -> dict[str, Any]:
    """Whether a five-field crontab is valid, why not, and its next fire times."""
    check = scheduler.validate_cron(body.expression, count=body.count, timezone=body.timezone)
    return {"valid": check.valid, "reason": check.reason,
            "next_fire_times": [seconds(moment) for moment in check.next_fire_times],
            "warnings": check.warnings}  # fmt: skip


@router.post("/scheduler/refresh", summary="Reload the jobs")
def refresh(scheduler: Scheduler) -> dict[str, Any]:
    """Make the leading scheduler load every job from Redis again."""
    return {"refreshed": True, "schedulers": scheduler.refresh()}


@router.get("/scheduler/status", summary="The scheduler")
def status(scheduler: Scheduler) -> dict[str, Any]:
    """The leader, the number of jobs and paused jobs, and the next fires."""
    infos = scheduler.list_jobs()
    upcoming = sorted((info for info in infos if info.next_run is not None), key=lambda info: info.next_run)  # type: ignore[arg-type, return-value]
    return {
        "leader": scheduler.leader(),
        "jobs": len(infos),
        "paused": sum(1 for info in infos if info.job.paused),
        "next_fires": [{"name": info.job.id, "next_run": seconds(info.next_run)} for info in upcoming[:20]],
    }


def _job(scheduler: Scheduler, name: str, access: Caller) -> dict[str, Any]:
    info = scheduler.job_info(name)
    return job_view(info.job, access, info)
