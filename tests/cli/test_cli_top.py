"""``aum top``: one frame rendered from a snapshot, the live view on a real worker and Redis.

The frame renderer is tested on a snapshot built by hand; ``aum top --once`` against a real
``aum worker`` running a task that reports progress; the live view in a subprocess, through a
pipe (no escape codes) and a pseudo-terminal (the alternate screen, given back on Ctrl-C).
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.events import STATS_FLUSH_TIMEOUT, wait_until

from aury_tasks import TaskHandle, TaskManager
from aury_tasks.cli.times import format_moment
from aury_tasks.cli.top import Snapshot, ended_rates, render_frame
from aury_tasks.core.status import TaskStatus
from aury_tasks.ledger.records import Progress, QueueStats, Statistics, TaskRecord

from .conftest import Invoke, RunAum
from .test_cli_ledger import closed_port, dead, rows

#: ``start_worker(*args)`` starts ``aum worker`` on the test Redis (see tests/conftest.py).
StartWorker = Callable[..., Any]
NOW = 1_795_000_000.0
TASK_ID = "0b6e5f9a-2c1d-4a8e-9f3b-7d6c5e4a3b21"


def queue(name: str, **counts: int) -> QueueStats:
    zero = dict.fromkeys(("pending", "scheduled", "running", "dead", "succeeded", "failed", "workers"), 0)
    return QueueStats(queue_name=name, **{**zero, **counts})


def minute(succeeded: int = 0, failed: int = 0, dead: int = 0) -> Statistics:
    total = succeeded + failed + dead
    return Statistics(start=NOW - 60, end=NOW, total=total, succeeded=succeeded, failed=failed, cancelled=0,
                      expired=0, dead=dead, success_rate=succeeded / total if total else 0.0,
                      average_duration=None, p50_duration=None, p95_duration=None)  # fmt: skip


def snapshot(queues: list[QueueStats], running: list[TaskRecord], *, total: int | None = None,
             taken_at: float = NOW) -> Snapshot:  # fmt: skip
    return Snapshot(
        taken_at=taken_at,
        broker="redis at redis://:***@127.0.0.1:6379/0",
        workers=2,
        queues=queues,
        last_minute={q.queue_name: minute(succeeded=q.succeeded, failed=q.failed) for q in queues},
        running=running,
        running_total=len(running) if total is None else total,
    )


# The frame, from a snapshot


def test_a_frame_shows_the_header_the_queues_and_the_running_tasks_aligned() -> None:
    # Given a snapshot of two queues and one running task that reported 40 %
    task = TaskRecord(id=TASK_ID, status=TaskStatus.STARTED, task_name="modules.reports.tasks.build_report",
                      queue_name="reports", started_at=NOW - 75, worker="build-01:48113",
                      progress=Progress(percent=40.0, message="step 2"))  # fmt: skip
    shot = snapshot([queue("emails", pending=3, succeeded=120, failed=2, workers=2),
                     queue("reports", running=1, dead=1, scheduled=4, workers=1)], [task])  # fmt: skip

    # When its frame is rendered, with a rate for one queue only
    frame = render_frame(shot, {"emails": 2.25})

    # Then the header names the masked broker, the time and the workers; numbers are right-aligned
    assert frame.splitlines() == [
        f"aum top - redis at redis://:***@127.0.0.1:6379/0 - {format_moment(NOW)} UTC - workers alive: 2",
        "",
        "QUEUE    PENDING  DELAYED  RUNNING  DEAD  DONE/1M  FAILED/1M  RATE/S  WORKERS",
        "emails         3        0        0     0      120          2     2.2        2",
        "reports        0        4        1     1        0          0       -        1",
        "",
        "ID                                    TASK          QUEUE    WORKER          RUNNING FOR  PROGRESS",
        f"{TASK_ID}  build_report  reports  build-01:48113        1m15s       40%",
    ]
    assert "\x1b" not in frame


def test_a_frame_with_nothing_running_says_so_and_counts_the_running_tasks_not_shown() -> None:
    # Given no queue at all, then a snapshot showing 1 of 5 running tasks (no progress, no worker yet)
    empty = snapshot([], [])
    task = TaskRecord(id=TASK_ID, status=TaskStatus.STARTED, task_name="t", queue_name="q", started_at=NOW)
    partial = snapshot([queue("q", running=5)], [task], total=5)

    # When their frames are rendered
    empty_frame, partial_frame = render_frame(empty, {}), render_frame(partial, {})

    # Then each says what is missing
    assert empty_frame.splitlines()[2:] == [
        "no queues yet: nothing was sent and no worker is running",
        "",
        "no task is running",
    ]
    assert partial_frame.splitlines()[-2].split()[-3:] == ["-", "0.0ms", "-"]
    assert partial_frame.splitlines()[-1] == "… and 4 more running (--limit to show more)"


def test_rates_are_the_tasks_ended_per_second_between_two_snapshots() -> None:
    # Given two snapshots 4 s apart: emails ended 10 tasks, old's count fell, new appeared
    before = snapshot([queue("emails", succeeded=100, failed=2), queue("old", succeeded=50)], [])
    after = snapshot([queue("emails", succeeded=108, failed=4), queue("old", succeeded=10), queue("new")], [],
                     taken_at=NOW + 4)  # fmt: skip

    # When the rates are computed
    rates = ended_rates(before, after)

    # Then emails ran 2.5 a second, a fallen count is 0, and a new queue has no rate yet
    assert rates == {"emails": 2.5, "old": 0.0}
    assert ended_rates(None, after) == {}


# aum top --once, on a real worker


@pytest.fixture
def running_task(start_worker: StartWorker, producer: TaskManager) -> Iterator[TaskHandle]:
    """A task that reports progress for a minute, running in a real ``aum worker -q fixture``.

    Before it: one task succeeded and one was dead-lettered; after it, three sent to the queue
    ``other``, which no worker serves (they stay pending).
    """
    worker = start_worker("-q", "fixture", "-c", "2")
    assert producer.get_task("echo").send("done").get_result(timeout=20) == "done"
    dead(producer, "top")
    handle = producer.get_task("with_progress").send(200, 0.3)
    wait_until(lambda: (r := handle.record()).status is TaskStatus.STARTED and r.progress, timeout=20,
               what="the task to run and report progress")  # fmt: skip
    for tag in ("a", "b", "c"):
        producer.get_task("on_other_queue").send(tag)
    yield handle
    worker.signal_group(signal.SIGKILL)


def test_once_shows_the_queues_counts_and_the_running_task_with_its_progress(
    running_task: TaskHandle, producer: TaskManager, invoke: Invoke
) -> None:
    # Given a running task (see the fixture), and the statistics of the two that ended (the
    # worker writes them once a second)
    record = running_task.record()
    wait_until(lambda: (s := producer.statistics(queue="fixture")).succeeded == 1 and s.failed == 1,
               timeout=STATS_FLUSH_TIMEOUT, what="the ended tasks' statistics")  # fmt: skip

    # When aum top prints one frame
    result = invoke("top", "--once", "--interval", "0.2")

    # Then the header, each queue's counts and the running task are shown, and aum exits 0
    assert result.exit_code == 0, result.output
    header, _, *lines = result.stdout.splitlines()
    assert header.startswith(f"aum top - {producer.broker_info.describe()} - ")
    assert header.endswith(" UTC - workers alive: 1")
    queues_table = lines[: lines.index("")]
    by_queue = {row[0]: row for row in rows("\n".join(queues_table), columns=9)}
    #                               pending delayed running dead done failed
    assert by_queue["fixture"][1:7] == ["0", "0", "1", "1", "1", "1"]
    assert by_queue["other"][1:7] == ["3", "0", "0", "0", "0", "0"]
    assert by_queue["fixture"][8] == "1" and by_queue["other"][8] == "0"
    tasks_table = lines[lines.index("") + 1 :]
    assert tasks_table[0].split() == ["ID", "TASK", "QUEUE", "WORKER", "RUNNING", "FOR", "PROGRESS"]
    (task,) = [line.split() for line in tasks_table[1:]]
    assert task[:4] == [running_task.id, "with_progress", "fixture", record.worker]
    assert task[5].endswith("%")
    assert result.stderr == ""


def test_an_interval_below_a_tenth_of_a_second_exits_2(invoke: Invoke) -> None:
    result = invoke("top", "--once", "--interval", "0")

    assert result.exit_code == 2
    assert "Invalid value for '--interval': must be at least 0.1 s" in result.stderr


def test_an_unreachable_broker_exits_4_with_one_line_without_the_password(run_aum: RunAum) -> None:
    # Given a password-protected broker URL on a port nobody listens on
    port = closed_port()

    # When the real aum top is started
    completed = run_aum("top", "--once", env={"TASK_BROKER_URL": f"redis://:s3cret@127.0.0.1:{port}/0"})

    # Then it exits 4 with one line naming the masked URL, and the password is nowhere
    assert completed.returncode == 4
    assert completed.stdout == ""
    (line,) = completed.stderr.splitlines()
    assert line.startswith(f"Error: ledger redis://:***@127.0.0.1:{port}/0 unreachable (")
    assert "s3cret" not in completed.stderr


def test_help_reads_like_a_man_page(invoke: Invoke) -> None:
    result = invoke("top", "--help")

    assert result.exit_code == 0
    for text in ("Usage: aum top [OPTIONS]", "Examples:", "aum top --once", "Exit codes:",
                 "4 broker unreachable", "--interval SECONDS", "--limit", "--once"):  # fmt: skip
        assert text in result.stdout, text
    assert "top  " in invoke("--help").stdout


# The live view, in a subprocess


def test_through_a_pipe_frames_follow_one_another_without_escape_codes_and_ctrl_c_exits_0(
    redis_url: str, start_aum: Callable[..., Any]
) -> None:
    # Given aum top running with its output in a pipe
    top = start_aum("top", "--interval", "0.2")

    # When it has drawn two frames and is interrupted
    wait_until(lambda: sum(line.startswith("aum top - ") for line in top.lines) >= 2, timeout=20,
               what="two frames")  # fmt: skip
    top.process.send_signal(signal.SIGINT)

    # Then it exits 0; the frames are plain text, a blank line between them
    assert top.wait() == 0
    assert not any("\x1b" in line for line in top.lines)
    second = next(i for i, line in enumerate(top.lines) if i and line.startswith("aum top - "))
    assert top.lines[second - 1] == ""


def test_on_a_terminal_it_draws_on_the_alternate_screen_and_gives_it_back_on_ctrl_c(
    redis_url: str, tmp_path: Path
) -> None:
    # Given aum top running on a pseudo-terminal
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASK_")}
    env.update({"TASK_BROKER_URL": redis_url, "TASK_DATA_DIR": str(tmp_path / ".aum")})
    process = subprocess.Popen([sys.executable, "-m", "aury_tasks.cli", "top", "-i", "0.2"], cwd=tmp_path,
                               env=env, stdin=follower, stdout=follower, stderr=follower)  # fmt: skip
    os.close(follower)
    try:
        # When it has drawn two frames and is interrupted
        output = read_until(leader, lambda seen: seen.count(b"aum top - ") >= 2)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=20)
        output += read_until(leader, lambda seen: False)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)

    # Then the frames went to the alternate screen, each from the top; the screen was given back
    assert code == 0
    assert output.startswith(b"\x1b[?1049h\x1b[?25l\x1b[Haum top - ")
    assert output.count(b"\x1b[Haum top - ") >= 2
    assert output.endswith(b"\x1b[?25h\x1b[?1049l")


def read_until(fd: int, done: Callable[[bytes], bool], timeout: float = 20) -> bytes:
    """What a pseudo-terminal gave until ``done(seen)``, its end, or ``timeout`` seconds of silence."""
    seen = b""
    while not done(seen):
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        seen += chunk
    return seen
