"""Scheduled jobs: cron, interval and one-off triggers that enqueue tasks.

:class:`SchedulerManager` keeps the jobs (JSON in Redis) and manages them from any process;
:class:`~aury_tasks.scheduler.runner.SchedulerRunner` fires them in ``aum scheduler`` / ``aum run``.
"""

from __future__ import annotations

from .jobs import JobDefinition, JobOptions
from .manager import JobInfo, SchedulerManager
from .store import LastRun
from .triggers import CronCheck, TriggerSpec, validate_cron

__all__ = ["CronCheck", "JobDefinition", "JobInfo", "JobOptions", "LastRun", "SchedulerManager",
           "TriggerSpec", "validate_cron"]  # fmt: skip
