"""``aum schedule`` and ``aum run``: jobs managed from the shell, against the test Redis.

The commands run in this process (CliRunner); ``aum run`` is a real subprocess.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration.events import wait_until

from aury_tasks import SchedulerManager, TaskManager

from .conftest import EXAMPLE_MODULES, ROOT, Invoke, RunAum

FIXTURE_MODULES = ROOT / "tests" / "fixtures" / "sample_modules"
ECHO = "sample_modules.jobs.tasks.echo"


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    """The environment of ``aum``: the test Redis and the fixture modules."""
    return {"TASK_BROKER_URL": redis_url, "TASK_MODULES_DIR": str(FIXTURE_MODULES)}


@pytest.fixture
def scheduler(producer: TaskManager) -> Iterator[SchedulerManager]:
    SchedulerManager.reset_instance()
    yield SchedulerManager.get_instance()
    SchedulerManager.reset_instance()


def test_add_list_show_pause_resume_update_remove(invoke: Invoke, env: dict[str, str], scheduler) -> None:
    # Given an interval job and a cron job added from the shell
    added = invoke("schedule", "add", "echo", "--every", "5m", "--id", "tick", "--args", '["hi"]', env=env)
    cron = invoke("schedule", "add", ECHO, "--cron", "0 2 * * 1-5", "--kwargs", '{"value": 1}',
                  "--misfire-grace-time", "2m", "--no-coalesce", env=env)  # fmt: skip
    assert added.exit_code == 0 and cron.exit_code == 0
    assert re.fullmatch(
        r"added tick: echo every 5m; next run \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n", added.stdout
    )
    job = scheduler.get_job(ECHO)
    options = job.options
    assert (job.args, job.kwargs, options.coalesce, options.misfire_grace_time) == (
        [],
        {"value": 1},
        False,
        120,
    )

    # When they are listed, the table is aligned and shows both
    listing = invoke("schedule", "list", env=env)
    assert listing.exit_code == 0
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["ID", "TASK", "TRIGGER", "NEXT", "RUN", "LAST", "RUN", "LAST", "STATUS"]
    assert [row.split()[0] for row in rows] == [ECHO, "tick"]
    assert {header.index("TRIGGER")} == {re.search(r" (every|cron) ", row).start() + 1 for row in rows}

    # And show gives the details and the next fire times of one job
    shown = invoke("schedule", "show", ECHO, "--count", "3", env=env)
    assert "cron 0 2 * * 1-5 (UTC)" in shown.stdout and '{"value": 1}' in shown.stdout
    assert len(re.findall(r"\d{4}-\d\d-\d\d 02:00:00 UTC", shown.stdout)) == 3

    # When one is paused, the list says so; resumed, it has a next run again
    assert invoke("schedule", "pause", "tick", env=env).stdout == "paused tick\n"
    assert scheduler.get_job("tick").paused
    assert " paused " in next(row for row in invoke("schedule", "list", env=env).stdout.splitlines()
                              if row.startswith("tick"))  # fmt: skip
    assert invoke("schedule", "resume", "tick", env=env).stdout.startswith("resumed tick; next run 20")
    assert not scheduler.get_job("tick").paused

    # When it is updated, what is given changes and the rest stays
    updated = invoke("schedule", "update", "tick", "--every", "90s", env=env)
    assert updated.stdout.startswith("updated tick: echo every 1m30s;")
    assert scheduler.get_job("tick").args == ["hi"]

    # And remove deletes it; a list with one unknown id changes nothing
    missing = invoke("schedule", "remove", "tick", "nope", env=env)
    assert missing.exit_code == 2 and "no scheduled job 'nope'" in missing.stderr
    assert scheduler.get_job("tick")
    assert invoke("schedule", "remove", "tick", env=env).stdout == "removed tick\n"
    assert [info.job.id for info in scheduler.list_jobs()] == [ECHO]
    as_json = json.loads(invoke("schedule", "list", "--json", env=env).stdout)
    assert as_json[0]["id"] == ECHO and as_json[0]["trigger_text"] == "cron 0 2 * * 1-5 (UTC)"


def test_run_sends_the_task_now_and_the_list_shows_its_last_run(
    invoke: Invoke, env: dict[str, str], scheduler, producer: TaskManager
) -> None:
    # Given a job
    invoke("schedule", "add", "echo", "--cron", "0 2 * * *", "--id", "nightly", "--args", '["n"]', env=env)

    # When it is run now
    ran = invoke("schedule", "run", "nightly", env=env)

    # Then its task is sent with the job's arguments, and the list shows it as the last run
    assert ran.exit_code == 0
    task_id = ran.stdout.strip()
    record = producer.task_record(task_id)
    assert (record.task_name, record.metadata) == (ECHO, {"scheduled_job": "nightly"})
    row = next(
        line for line in invoke("schedule", "list", env=env).stdout.splitlines() if line.startswith("nightly")
    )
    assert row.rstrip().endswith("pending")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["add", "no_such_task", "--cron", "0 2 * * *"], "unknown task 'no_such_task'"),
        (["add", "echo", "--cron", "0 25 * * *"], "invalid cron '0 25 * * *': hour field '25'"),
        (["add", "echo", "--cron", "0 2 * *"], "invalid cron '0 2 * *': 4 field(s), expected 5"),
        (["add", "echo", "--cron", "0 0 30 2 *"], "never fires"),
        (["add", "echo", "--every", "5m", "--cron", "0 2 * * *"], "give exactly one trigger"),
        (["add", "echo"], "give exactly one trigger"),
        (["add", "echo", "--every", "soon"], "'soon' is not a number of seconds or a duration"),
        (["add", "echo", "--at", "tomorrow"], "run_at 'tomorrow' is not an ISO 8601 date and time"),
        (
            ["add", "echo", "--cron", "0 2 * * *", "--timezone", "Mars/Olympus"],
            "unknown timezone 'Mars/Olympus'",
        ),
        (["add", "echo", "--every", "1m", "--args", "{oops"], "not valid JSON"),
        (["show", "nope"], "no scheduled job 'nope'"),
        (["pause", "nope"], "no scheduled job 'nope'"),
        (["run", "nope"], "no scheduled job 'nope'"),
        (["update", "nope", "--every", "1m"], "no scheduled job 'nope'"),
        (["validate", "*/5 * * * * *"], "6 field(s), expected 5"),
        (["validate", "0 0 * * 8"], "invalid cron '0 0 * * 8': day-of-week field"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(invoke: Invoke, env: dict[str, str], arguments: list[str],
                                          message: str) -> None:  # fmt: skip
    result = invoke("schedule", *arguments, env=env)

    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert len([line for line in result.stderr.splitlines() if line.startswith("Error")]) == 1


def test_validate_prints_the_next_fire_times_and_warns_about_clock_changes(invoke: Invoke) -> None:
    # A valid crontab: the next fire times, no Redis needed
    valid = invoke("schedule", "validate", "*/15 9-17 * * 1-5", "--count", "3")
    assert valid.exit_code == 0
    assert valid.stdout.splitlines()[0] == "valid: next 3 fire time(s) in UTC"
    assert len(re.findall(r"^  \d{4}-\d\d-\d\d (09|1\d):(00|15|30|45):00 UTC  \((Mon|Tue|Wed|Thu|Fri)\)$",
                          valid.stdout, flags=re.MULTILINE)) == 3  # fmt: skip
    assert valid.stderr == ""

    # A daily run at 02:30 in Berlin: warned about the day 02:30 does not exist and the day it happens twice
    local = invoke("schedule", "validate", "30 2 * * *", "--timezone", "Europe/Berlin", "--json")
    check = json.loads(local.stdout)
    assert check["valid"] and check["timezone"] == "Europe/Berlin"
    assert len(check["warnings"]) == 2
    assert "does not exist: the 02:30 run happens at 03:30 CEST" in check["warnings"][0]
    assert "happens twice: the 02:30 run happens twice (CEST, then CET)" in check["warnings"][1]


def test_aum_run_runs_a_worker_and_the_scheduler_of_the_example_modules(
    start_aum, tmp_path: Path, scheduler, producer: TaskManager
) -> None:
    # Given the example modules, with their scheduled report every 30 seconds
    # When aum run starts
    process = start_aum("run", "--modules", str(EXAMPLE_MODULES), "--lease-ttl", "2")
    process.wait_for_line("scheduler ready")
    process.wait_for_line("leads: 1 job(s)")
    assert scheduler.get_job("todays-sales-report").origin == "code"

    # Then run now of the job is run by its worker: today's report is written
    handle = scheduler.run_job_now("todays-sales-report")
    report = handle.get_result(timeout=30)
    assert report["orders"] == 1000
    assert (tmp_path / ".aum" / "reports" / f"sales-{report['day']}.json").is_file()

    # And SIGTERM stops both, and the lease is given up
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    wait_until(lambda: scheduler.store.leader() is None, timeout=5, what="the lease to be given up")


@pytest.mark.parametrize(
    ("command", "url", "code", "message"),
    [
        (
            "run",
            "amqp://guest:s3cret@127.0.0.1:1/",
            2,
            "scheduled jobs are kept in Redis: set TASK_RESULT_BACKEND_URL",
        ),
        ("scheduler", "amqp://guest:s3cret@127.0.0.1:1/", 2, "scheduled jobs are kept in Redis"),
        ("run", "redis://:s3cret@127.0.0.1:1/0", 4, "redis://:***@127.0.0.1:1/0 unreachable"),
        ("scheduler", "redis://:s3cret@127.0.0.1:1/0", 4, "redis://:***@127.0.0.1:1/0 unreachable"),
    ],
)
def test_a_scheduler_without_its_redis_stops_at_once_with_one_line(
    run_aum: RunAum, command: str, url: str, code: int, message: str
) -> None:
    completed = run_aum(command, "--modules", str(EXAMPLE_MODULES), env={"TASK_BROKER_URL": url}, timeout=30)

    assert completed.returncode == code
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr and "s3cret" not in completed.stderr
    assert "Error:" in completed.stderr.splitlines()[-1]
