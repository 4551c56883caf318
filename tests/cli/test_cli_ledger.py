"""The ledger commands (status, result, cancel, retry, list, stats, queues, dlq, cleanup, send --wait).

Each runs against the test Redis, on records a real ``aum worker`` wrote. The commands run in
this process (CliRunner) unless a test checks what a user's shell sees (a real subprocess).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from integration.events import STATS_FLUSH_TIMEOUT, wait_until

from aury_tasks import TaskFailed, TaskHandle, TaskManager
from aury_tasks.cli.times import format_moment

from .conftest import ROOT, Invoke, RunAum

FIXTURE_MODULES = ROOT / "tests" / "fixtures" / "sample_modules"
ECHO = "sample_modules.jobs.tasks.echo"
PERMANENT = "sample_modules.jobs.tasks.permanent"
FAILS_WITH = "sample_modules.jobs.tasks.fails_with"
#: ``2026-11-22 12:40:27 UTC (3m ago)``, as ``aum status`` shows a moment.
MOMENT_AGO = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \([\d.]+(ms|s|m\d\ds) ago\)"
UNKNOWN = "3f2a9c1e-0000-4e8f-9a0b-1c2d3e4f5a6b"

#: ``worker()`` starts ``aum worker -q fixture`` (see the fixture).
StartWorker = Callable[..., Any]


@pytest.fixture
def worker(start_worker: StartWorker) -> Iterator[StartWorker]:
    """Start ``aum worker -q fixture``; it is killed at the end of the test.

    A graceful stop takes seconds; what the worker ran is already in the ledger by then, and
    the test Redis is flushed after the test, so nothing is lost by killing it.
    """
    started: list[Any] = []

    def start(*, ready: bool = True) -> Any:
        process = start_worker("-q", "fixture", ready=ready)
        started.append(process)
        return process

    yield start
    for process in started:
        process.signal_group(signal.SIGKILL)


def counted(producer: TaskManager, total: int) -> None:
    """Wait until the worker's statistics of the last day count ``total`` tasks (it writes them
    once a second)."""
    wait_until(lambda: producer.statistics().total == total, timeout=STATS_FLUSH_TIMEOUT,
               what="the worker's statistics")  # fmt: skip


def fail(producer: TaskManager, task: str, *args: object) -> TaskHandle:
    """Send ``task`` and wait until it failed (a worker must run)."""
    handle = producer.get_task(task).send(*args)
    with pytest.raises(TaskFailed):
        handle.get_result(timeout=20)
    return handle


def dead(producer: TaskManager, tag: str) -> TaskHandle:
    """A task that raised PermanentError: failed at once, its message in the fixture dead letters."""
    handle = fail(producer, "permanent", tag)
    letters = producer.dead_letters("fixture")
    wait_until(lambda: handle.id in {letter.task_id for letter in letters.list()}, timeout=10,
               what=f"the dead letter of {handle.id}")  # fmt: skip
    return handle


def fields(stdout: str) -> dict[str, str]:
    """``name  value`` lines (as ``aum status`` prints them) as a dict, up to the first blank line.

    A name is words with single spaces between; two spaces or more end it. Continuation lines of
    a multi-line value are left out.
    """
    head = stdout.split("\n\n", 1)[0]
    return dict(re.findall(r"^(\S+(?: \S+)*?)  +(.*)$", head, flags=re.MULTILINE))


def rows(stdout: str, columns: int = 4) -> list[list[str]]:
    """The first ``columns`` cells of each row of a table (header left out)."""
    return [line.split()[:columns] for line in stdout.splitlines()[1:]]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# aum status


def test_status_of_a_succeeded_task_shows_its_fields_aligned_and_exits_0(
    worker: StartWorker, producer: TaskManager, invoke: Invoke
) -> None:
    # Given a task that succeeded
    worker()
    handle = producer.get_task("echo").send({"a": [1, 2]})
    assert handle.get_result(timeout=20) == {"a": [1, 2]}

    # When its status is shown
    result = invoke("status", handle.id)

    # Then every field that has a value is shown, values in one column, and aum exits 0
    assert result.exit_code == 0
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    names = [line[:10].rstrip() for line in lines]
    assert names == ["id", "task", "queue", "status", "attempt", "enqueued", "started", "finished",
                     "duration", "worker", "result"]  # fmt: skip
    assert all(line[8:10] == "  " and line[10] != " " for line in lines)
    shown = fields(result.stdout)
    record = handle.record()
    named = ["id", "task", "queue", "status", "attempt"]
    assert [shown[name] for name in named] == [handle.id, ECHO, "fixture", "success", "1"]
    assert (shown["worker"], shown["result"]) == (record.worker, '{"a": [1, 2]}')
    for name in ("enqueued", "started", "finished"):
        assert re.fullmatch(MOMENT_AGO, shown[name]), name


def test_status_json_prints_the_whole_record(
    worker: StartWorker, producer: TaskManager, invoke: Invoke
) -> None:
    # Given a task that succeeded
    worker()
    handle = producer.get_task("echo").send("json")
    assert handle.get_result(timeout=20) == "json"

    # When its status is asked for as JSON
    result = invoke("status", handle.id, "--json")

    # Then stdout is the record, exactly as the Python API gives it
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert shown == json.loads(json.dumps(handle.record().to_dict()))
    assert (shown["id"], shown["status"], shown["result"]) == (handle.id, "success", "json")
    assert shown["args"] == ["json"]


def test_status_of_a_failed_task_exits_1_with_its_error_and_traceback(
    worker: StartWorker, producer: TaskManager, invoke: Invoke
) -> None:
    # Given a task that failed at once (an error it is not retried on)
    worker()
    handle = fail(producer, "fails_with", "value", "tb")

    # When its status is shown
    result = invoke("status", handle.id)

    # Then aum exits 1, showing the error line, then a blank line and the task's traceback
    assert result.exit_code == 1
    head, traceback = result.stdout.split("\n\n", 1)
    shown = fields(head)
    assert (shown["task"], shown["status"]) == (FAILS_WITH, "failure")
    assert head.splitlines()[-1] == "error     ValueError: bad input tb"
    assert traceback.startswith("Traceback (most recent call last):\n")
    assert 'raise ValueError(f"bad input {tag}")' in traceback
    assert traceback.endswith("\nValueError: bad input tb\n")


def test_status_follow_shows_progress_on_stderr_then_the_final_record(
    worker: StartWorker, producer: TaskManager, invoke: Invoke
) -> None:
    # Given a task that reports progress 3 times, sent before its worker is ready
    handle = producer.get_task("with_progress").send(3, 0.3)
    worker(ready=False)

    # When its status is followed
    result = invoke("status", handle.id, "--follow")

    # Then each report is one line on stderr, in order, and stdout is the final record
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"following {handle.id} (pending); Ctrl-C stops following",
        " 33%  1/3  step 1",
        " 67%  2/3  step 2",
        "100%  3/3  step 3",
    ]
    shown = fields(result.stdout)
    assert (shown["status"], shown["progress"], shown["result"]) == ("success", "100%  3/3  step 3", '"done"')


# One line and exit 1 for an id nobody sent


@pytest.mark.parametrize("command", ["status", "result", "cancel", "retry"])
def test_an_unknown_id_is_one_error_line_and_exit_1(invoke: Invoke, redis_url: str, command: str) -> None:
    # Given an empty ledger
    # When a command is given an id it never saw
    result = invoke(command, UNKNOWN, env={"TASK_BROKER_URL": redis_url})

    # Then it exits 1 with one line saying so, and nothing on stdout
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: no task with id {UNKNOWN} (never sent, or its record expired)\n"


def test_an_unreachable_ledger_exits_4_with_one_line_without_the_password(run_aum: RunAum) -> None:
    # Given a password-protected broker URL on a port nobody listens on
    port = closed_port()
    env = {"TASK_BROKER_URL": f"redis://:s3cret@127.0.0.1:{port}/0"}

    # When the real aum is asked for a task's status
    completed = run_aum("status", "x", env=env)

    # Then it exits 4 with one line naming the masked URL, and the password is nowhere
    assert completed.returncode == 4
    assert completed.stdout == ""
    assert completed.stderr.splitlines() == [
        f"Error: ledger redis://:***@127.0.0.1:{port}/0 unreachable "
        f"(Error 111 connecting to 127.0.0.1:{port}. Connection refused.)"
    ]
    assert "s3cret" not in completed.stderr


# aum result


def test_result_of_an_unfinished_task_without_wait_exits_1(producer: TaskManager, invoke: Invoke) -> None:
    # Given a task no worker ran
    handle = producer.get_task("echo").send(1)

    # When its result is asked for without --wait
    result = invoke("result", handle.id)

    # Then aum exits 1 with one line saying it is pending
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: task {handle.id} is pending: not finished (--wait waits for it)\n"


def test_result_wait_times_out_with_one_line(producer: TaskManager, invoke: Invoke) -> None:
    # Given a task no worker runs
    handle = producer.get_task("echo").send(1)

    # When its result is waited for half a second
    started = time.monotonic()
    result = invoke("result", handle.id, "--wait", "0.5")

    # Then aum gives up after about that long, with one line
    assert time.monotonic() - started < 5
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: task {handle.id} timed out after 0.5 s (still pending)\n"


def test_result_wait_prints_the_json_result_once_a_worker_ran_the_task(
    worker: StartWorker, producer: TaskManager, invoke: Invoke
) -> None:
    # Given a task sent while no worker runs, then a worker starting
    handle = producer.get_task("echo").send({"n": 1, "tags": ["a"]})
    worker(ready=False)

    # When its result is waited for
    result = invoke("result", handle.id, "--wait", "20")

    # Then stdout is its result as indented JSON
    assert result.exit_code == 0
    assert result.stdout == '{\n  "n": 1,\n  "tags": [\n    "a"\n  ]\n}\n'
    assert result.stderr == ""


def test_result_of_a_failed_task_exits_1_with_the_remote_error(
    worker: StartWorker, producer: TaskManager, invoke: Invoke
) -> None:
    # Given a task that failed
    worker()
    handle = fail(producer, "permanent", "res")

    # When its result is asked for
    result = invoke("result", handle.id)

    # Then aum exits 1 with one line naming the remote error type and message
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: task {handle.id} ({PERMANENT}) failed: PermanentError: cannot ever work res\n"
    )


# aum cancel, aum retry


def test_cancel_of_a_pending_task_cancels_it_and_a_second_cancel_exits_1(
    producer: TaskManager, invoke: Invoke
) -> None:
    # Given a task no worker ran
    handle = producer.get_task("echo").send(1)

    # When it is cancelled
    result = invoke("cancel", handle.id)

    # Then aum says so, and its status is cancelled
    assert result.exit_code == 0
    assert result.stdout == f"cancelled {handle.id}\n"
    status = invoke("status", handle.id)
    assert status.exit_code == 1
    shown = fields(status.stdout)
    assert (shown["status"], shown["reason"]) == ("cancelled", "cancelled by request")

    # When it is cancelled again
    again = invoke("cancel", handle.id)

    # Then aum exits 1: it already ended
    assert again.exit_code == 1
    assert again.stdout == ""
    assert again.stderr == f"Error: task {handle.id} already ended (cancelled); nothing to cancel\n"


def test_retry_of_a_failed_task_prints_the_new_id_linked_to_the_old_one(
    worker: StartWorker, producer: TaskManager, invoke: Invoke
) -> None:
    # Given a task that failed
    worker()
    old = fail(producer, "fails_with", "value", "again")

    # When it is retried
    result = invoke("retry", old.id)

    # Then stdout is only the new task's id
    assert result.exit_code == 0
    new_id = result.stdout.strip()
    assert result.stdout == f"{new_id}\n" and new_id != old.id
    assert result.stderr == f"sent {old.id} again as a new task on queue fixture\n"

    # And the new task ran (failing again), its status and the old one's showing the link
    with pytest.raises(TaskFailed):
        producer.get_result(new_id, timeout=20)
    new_status = invoke("status", new_id)
    assert new_status.exit_code == 1
    shown = fields(new_status.stdout)
    assert (shown["task"], shown["status"], shown["retry of"]) == (FAILS_WITH, "failure", old.id)
    assert fields(invoke("status", old.id).stdout)["retried by"] == new_id


def test_retry_of_a_succeeded_task_exits_1(
    worker: StartWorker, producer: TaskManager, invoke: Invoke
) -> None:
    worker()
    handle = producer.get_task("echo").send(1)
    assert handle.get_result(timeout=20) == 1

    result = invoke("retry", handle.id)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: task {handle.id} is success; only failed, dead, cancelled or expired tasks can be retried\n"
    )


# aum list


def test_list_filters_by_status_queue_and_task(
    worker: StartWorker, producer: TaskManager, invoke: Invoke
) -> None:
    # Given 2 echo tasks that succeeded, 1 task that failed, and 1 waiting on a queue no worker serves
    worker()
    echoes = [producer.get_task("echo").send(i) for i in range(2)]
    for handle in echoes:
        handle.get_result(timeout=20)
    failed = fail(producer, "permanent", "list")
    waiting = producer.get_task("on_other_queue").send("list")

    # When the list is filtered by status, queue or task
    by_status = invoke("list", "--status", "failure")
    by_queue = invoke("list", "--queue", "other")
    by_task = invoke("list", "--task", "echo")

    # Then each shows exactly its tasks, and how many matched
    assert rows(by_status.stdout) == [[failed.id, "permanent", "fixture", "failure"]]
    assert rows(by_queue.stdout) == [[waiting.id, "on_other_queue", "other", "pending"]]
    assert sorted(rows(by_task.stdout)) == sorted([h.id, "echo", "fixture", "success"] for h in echoes)
    assert by_task.stdout.splitlines()[0].split() == ["ID", "TASK", "QUEUE", "STATUS", "ENQUEUED", "DURATION"]
    assert [r.stderr for r in (by_status, by_queue, by_task)] == [
        "showing 1 of 1 tasks (page 1 of 1)\n",
        "showing 1 of 1 tasks (page 1 of 1)\n",
        "showing 2 of 2 tasks (page 1 of 1)\n",
    ]
    assert all(r.exit_code == 0 for r in (by_status, by_queue, by_task))


def test_list_pages_newest_first(producer: TaskManager, invoke: Invoke) -> None:
    # Given 3 tasks sent one after the other
    sent = []
    for i in range(3):
        sent.append(producer.get_task("echo").send(i))
        time.sleep(0.01)  # enqueue times are kept in milliseconds: give each its own

    # When the list is shown 2 at a time
    first = invoke("list", "-n", "2")
    second = invoke("list", "-n", "2", "--page", "2")
    past = invoke("list", "-n", "2", "--page", "3")

    # Then page 1 holds the 2 newest, page 2 the oldest, and stderr says which page of how many
    assert [row[0] for row in rows(first.stdout)] == [sent[2].id, sent[1].id]
    assert first.stderr == "showing 2 of 3 tasks (page 1 of 2); --page 2 for more\n"
    assert [row[0] for row in rows(second.stdout)] == [sent[0].id]
    assert second.stderr == "showing 1 of 3 tasks (page 2 of 2)\n"
    assert (past.exit_code, past.stdout) == (0, "")
    assert past.stderr == "page 3 is past the last page (2) of 3 tasks\n"


def test_list_json_prints_the_page_with_whole_records(producer: TaskManager, invoke: Invoke) -> None:
    # Given 2 tasks
    older = producer.get_task("echo").send("older")
    time.sleep(0.01)  # enqueue times are kept in milliseconds
    newer = producer.get_task("echo").send("newer")

    # When the list is asked for as JSON, one per page
    result = invoke("list", "--json", "-n", "1")

    # Then it is the page: its records, the total, the page and its size
    assert result.exit_code == 0
    page = json.loads(result.stdout)
    assert page == {
        "items": [json.loads(json.dumps(newer.record().to_dict()))],
        "total": 2,
        "page": 1,
        "page_size": 1,
    }
    assert older.id not in result.stdout
    assert result.stderr == ""


def test_list_of_an_empty_ledger_says_no_tasks_match(invoke: Invoke, redis_url: str) -> None:
    result = invoke("list", env={"TASK_BROKER_URL": redis_url})

    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "no tasks match\n")


# aum stats, aum queues


def test_stats_count_successes_and_failures(
    worker: StartWorker, producer: TaskManager, invoke: Invoke
) -> None:
    # Given 2 tasks that succeeded and 1 that failed
    worker()
    for i in range(2):
        assert producer.get_task("echo").send(i).get_result(timeout=20) == i
    fail(producer, "permanent", "stats")
    counted(producer, 3)

    # When the statistics are shown
    result = invoke("stats")

    # Then they count each outcome, and the success rate
    assert result.exit_code == 0
    shown = fields(result.stdout)
    assert {name: shown[name] for name in
            ("total", "succeeded", "failed", "cancelled", "expired", "dead", "success rate")} == {
        "total": "3", "succeeded": "2", "failed": "1", "cancelled": "0", "expired": "0", "dead": "0",
        "success rate": "66.7%",
    }  # fmt: skip
    assert re.fullmatch(r"[\d.]+m?s", shown["avg duration"])
    assert list(shown)[-3:] == ["avg duration", "p50 duration", "p95 duration"]


def test_stats_json(worker: StartWorker, producer: TaskManager, invoke: Invoke) -> None:
    # Given 1 task that succeeded and 1 that failed
    worker()
    assert producer.get_task("echo").send(1).get_result(timeout=20) == 1
    fail(producer, "permanent", "stats")
    counted(producer, 2)

    # When the statistics are asked for as JSON
    result = invoke("stats", "--json")

    # Then they are the counts, the rate and the durations
    assert result.exit_code == 0
    stats = json.loads(result.stdout)
    assert set(stats) == {"start", "end", "total", "succeeded", "failed", "cancelled", "expired", "dead",
                          "success_rate", "average_duration", "p50_duration", "p95_duration"}  # fmt: skip
    assert (stats["total"], stats["succeeded"], stats["failed"], stats["dead"]) == (2, 1, 1, 0)
    assert stats["success_rate"] == pytest.approx(0.5)
    assert stats["end"] - stats["start"] == pytest.approx(86_400, abs=5)
    assert 0 < stats["average_duration"] < 5


def test_queues_shows_the_pending_tasks_of_a_queue_no_worker_serves(
    producer: TaskManager, run_aum: RunAum, redis_url: str
) -> None:
    # Given 2 tasks waiting on the fixture queue, and no worker
    for i in range(2):
        producer.get_task("echo").send(i)

    # When the real aum (which imports no task module) shows the queues
    completed = run_aum("queues", env={"TASK_BROKER_URL": redis_url})

    # Then the fixture queue is there with its 2 pending tasks and no worker
    assert completed.returncode == 0
    assert completed.stdout.splitlines() == [
        "QUEUE    PENDING  SCHEDULED  RUNNING  DEAD  SUCCEEDED  FAILED  WORKERS",
        "fixture        2          0        0     0          0       0        0",
    ]


# aum dlq


def test_dlq_list_shows_a_dead_task(worker: StartWorker, producer: TaskManager, invoke: Invoke) -> None:
    # Given a task that died (PermanentError)
    worker()
    handle = dead(producer, "dlq")
    (letter,) = producer.dead_letters("fixture").list()

    # When the fixture queue's dead letters are listed
    result = invoke("dlq", "list", "-q", "fixture")

    # Then it is the one row, with its task, when it died, its status and error
    assert result.exit_code == 0
    error = "PermanentError: cannot ever work dlq"
    assert result.stdout.splitlines()[1:] == [
        f"{handle.id}  permanent  {format_moment(letter.dead_at)}  failure  {error}"
    ]
    assert result.stderr == "showing 1 of 1 dead letters in queue fixture\n"


@pytest.mark.parametrize("queue_option", [["-q", "fixture"], []], ids=["given queue", "its record's queue"])
def test_dlq_show_prints_the_dead_letter_with_its_arguments(
    worker: StartWorker, producer: TaskManager, invoke: Invoke, queue_option: list[str]
) -> None:
    worker()
    handle = dead(producer, "show")

    result = invoke("dlq", "show", handle.id, *queue_option)

    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line for line in lines if not line.startswith("dead at")] == [
        f"id       {handle.id}",
        f"task     {PERMANENT}",
        "queue    fixture",
        "status   failure",
        "error    PermanentError: cannot ever work show",
        'args     ["show"]',
        "kwargs   {}",
    ]
    assert re.fullmatch(f"dead at  {MOMENT_AGO}", lines[3])


def test_dlq_requeue_prints_old_and_new_id_and_removes_the_dead_letter(
    worker: StartWorker, producer: TaskManager, invoke: Invoke
) -> None:
    # Given a task that died
    worker()
    old = dead(producer, "requeue")

    # When it is requeued
    result = invoke("dlq", "requeue", old.id)  # its queue, fixture, from its record

    # Then stdout is "old new", and the old one is no dead letter any more
    assert result.exit_code == 0
    new_id = result.stdout.split()[-1]
    assert result.stdout == f"{old.id} {new_id}\n" and new_id != old.id
    assert result.stderr == "requeued 1 dead letter(s) to queue fixture\n"
    gone = invoke("dlq", "show", old.id, "-q", "fixture")
    assert (gone.exit_code, gone.stderr) == (1, f"Error: no dead letter {old.id} in queue fixture\n")

    # And the new task ran with the same arguments, linked to the old one
    with pytest.raises(TaskFailed, match="cannot ever work requeue"):
        producer.get_result(new_id, timeout=20)
    assert producer.task_record(new_id).retry_of == old.id


def test_dlq_purge_without_yes_and_without_a_terminal_is_a_usage_error(
    worker: StartWorker, producer: TaskManager, invoke: Invoke
) -> None:
    # Given a dead letter
    worker()
    dead(producer, "purge")

    # When the dead letters are purged without --yes, with no terminal to ask on
    result = invoke("dlq", "purge", "-q", "fixture")

    # Then aum exits 2 asking for --yes, and the dead letter is kept
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == "Error: purge deletes for good: add --yes to confirm"
    assert len(producer.dead_letters("fixture")) == 1


def test_dlq_purge_with_yes_deletes_every_dead_letter(
    worker: StartWorker, producer: TaskManager, invoke: Invoke
) -> None:
    # Given a dead letter
    worker()
    dead(producer, "purge")

    # When the dead letters are purged with --yes
    result = invoke("dlq", "purge", "-q", "fixture", "--yes")

    # Then aum says how many it deleted, and none is left
    assert result.exit_code == 0
    assert result.stdout == "deleted 1 dead letter(s) of queue fixture\n"
    assert len(producer.dead_letters("fixture")) == 0
    after = invoke("dlq", "list", "-q", "fixture")
    assert (after.exit_code, after.stdout, after.stderr) == (0, "", "no dead letters in queue fixture\n")


# aum cleanup


def test_cleanup_deletes_ended_records_and_keeps_pending_ones(
    worker: StartWorker, producer: TaskManager, invoke: Invoke
) -> None:
    # Given 2 tasks that ended and 1 waiting on a queue no worker serves
    worker()
    ended = [producer.get_task("echo").send(i) for i in range(2)]
    for handle in ended:
        handle.get_result(timeout=20)
    waiting = producer.get_task("on_other_queue").send("kept")

    # When records that ended over an hour ago are cleaned up, none goes
    assert invoke("cleanup", "--older-than", "1h").stdout.startswith("deleted 0 record(s) ")

    # When every ended record is cleaned up
    result = invoke("cleanup", "--older-than", "0s")

    # Then aum says 2 went: those are unknown now, the waiting one is still pending
    assert result.exit_code == 0
    deleted = r"deleted 2 record\(s\) of tasks that ended before \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n"
    assert re.fullmatch(deleted, result.stdout)
    for handle in ended:
        assert invoke("status", handle.id).stderr == (
            f"Error: no task with id {handle.id} (never sent, or its record expired)\n"
        )
    kept = invoke("status", waiting.id)
    assert (kept.exit_code, fields(kept.stdout)["status"]) == (0, "pending")


# aum send --wait


def test_send_wait_prints_the_json_result(worker: StartWorker, run_aum: RunAum, redis_url: str) -> None:
    # Given a worker
    worker()

    # When the real aum sends a task and waits for it
    completed = run_aum(
        "send", "echo", '[{"x": [1, 2]}]', "--modules", str(FIXTURE_MODULES), "--wait", "30",
        env={"TASK_BROKER_URL": redis_url},
    )  # fmt: skip

    # Then stdout is only its result as JSON; stderr says what was sent and which id it waits for
    assert completed.returncode == 0
    assert json.loads(completed.stdout) == {"x": [1, 2]}
    sent, waiting = completed.stderr.splitlines()
    assert sent.startswith(f"sent {ECHO} to queue fixture via redis at ")
    assert re.fullmatch(
        r"task id [0-9a-f-]{36}; waiting for it to end \(Ctrl-C stops waiting, not the task\)", waiting
    )


def test_send_wait_of_a_failing_task_exits_1_with_one_line(
    worker: StartWorker, run_aum: RunAum, redis_url: str
) -> None:
    # Given a worker
    worker()

    # When the real aum sends a task that fails, and waits for it
    completed = run_aum(
        "send", "permanent", '["sent"]', "--modules", str(FIXTURE_MODULES), "--wait", "30",
        env={"TASK_BROKER_URL": redis_url},
    )  # fmt: skip

    # Then it exits 1, its last line naming the error, with no traceback
    assert completed.returncode == 1
    assert completed.stdout == ""
    _sent, waiting, error = completed.stderr.splitlines()
    task_id = waiting.split()[2].rstrip(";")
    assert error == f"Error: task {task_id} ({PERMANENT}) failed: PermanentError: cannot ever work sent"
    assert "Traceback" not in completed.stderr
