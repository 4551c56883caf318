"""Report tasks: compute statistics and write them as JSON to ``REPORTS_DIR`` (default ``.aum/reports``)."""

from __future__ import annotations

import json
import os
import random
import statistics
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from loguru import logger

from aury_tasks import SchedulerManager, TaskManager, WorkflowHandle, chord

tm = TaskManager.get_instance()
scheduler = SchedulerManager.get_instance()


def _output_dir() -> Path:
    directory = Path(os.environ.get("REPORTS_DIR", ".aum/reports"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@tm.conditional_task(queue_name="reports", max_retries=2, timeout=300)
def build_report(day: str, orders: int = 1000) -> dict:
    """Summarise a day of (generated) orders and write ``<REPORTS_DIR>/sales-<day>.json``."""
    rng = random.Random(day)  # the same day gives the same report, so a retry is harmless
    amounts = [round(rng.lognormvariate(3, 0.8), 2) for _ in range(orders)]
    report = {
        "day": day,
        "orders": orders,
        "revenue": round(sum(amounts), 2),
        "mean": round(statistics.fmean(amounts), 2),
        "median": round(statistics.median(amounts), 2),
        "p95": round(statistics.quantiles(amounts, n=20)[-1], 2) if orders > 1 else amounts[0],
    }
    path = _output_dir() / f"sales-{day}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(path)  # atomic: a redelivered task never leaves a half-written file
    logger.info("report for {} written to {}: revenue {}", day, path, report["revenue"])
    return report


@tm.conditional_task(queue_name="reports", max_retries=0, timeout=30)
async def export_report(day: str) -> str:
    """Copy a built report to ``<REPORTS_DIR>/exports/`` (an async task)."""
    source = _output_dir() / f"sales-{day}.json"
    target = _output_dir() / "exports" / source.name
    target.parent.mkdir(exist_ok=True)
    target.write_text(source.read_text())
    logger.info("exported {}", target)
    return str(target)


@tm.conditional_task(queue_name="reports", max_retries=2, timeout=60)
def summarize_week(reports: list[dict]) -> dict:
    """Add daily reports up (a chord's callback) and write ``<REPORTS_DIR>/week-<first day>.json``."""
    week = {
        "days": [report["day"] for report in reports],
        "orders": sum(report["orders"] for report in reports),
        "revenue": round(sum(report["revenue"] for report in reports), 2),
        "best_day": max(reports, key=lambda report: report["revenue"])["day"],
    }
    path = _output_dir() / f"week-{week['days'][0]}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(week, indent=2))
    tmp.replace(path)
    logger.info("week from {} written to {}: revenue {}", week["days"][0], path, week["revenue"])
    return week


def build_week(first_day: str, orders: int = 1000) -> WorkflowHandle:
    """Build the seven daily reports from ``first_day`` in parallel, then their weekly summary.

    >>> build_week("2026-11-16").get_result(timeout=60)["revenue"]
    """
    start = date.fromisoformat(first_day)
    days = [(start + timedelta(days=offset)).isoformat() for offset in range(7)]
    return chord([build_report.s(day, orders) for day in days], summarize_week.s()).send()


@scheduler.scheduled_task(interval=30, id="todays-sales-report")
@tm.conditional_task(queue_name="reports", max_retries=2, timeout=300)
def refresh_todays_report() -> dict:
    """Rebuild today's report (UTC day), every 30 seconds: `aum run` shows it within a minute.

    A real project would rather say ``cron="5 0 * * *"`` (five past midnight, for the day before).
    """
    return build_report(datetime.now(timezone.utc).date().isoformat())
