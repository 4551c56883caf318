"""The scheduler's targets: firing delay with 1,000 registered jobs, and failover after a kill.

Real ``aum scheduler`` processes (``--schedulers`` of them, one leading) run on one private Redis
(the embedded Valkey on a free loopback port in a temporary directory, as ``run.py`` starts it);
no worker runs, since a scheduler only enqueues. ``--jobs`` jobs are registered through
``SchedulerManager.add_job`` before the schedulers start: ``--fast-jobs`` of them every second,
the rest daily, weekly and monthly crons that cannot fire during the run (they are loaded and
kept in order by the leader like any job).

Measured:

* firing delay of the 1-second jobs, over ``--fires`` fires or more, once the leader has been
  firing for a few seconds. The planned time of each fire is exact (its claim key and its last
  run record both carry it); the enqueue is bracketed by two times taken in the scheduler
  process: the ledger record's ``enqueued_at`` (``time.time()`` just before the round trip that
  writes the message) and the last run's ``fired_at`` (just after it returned). The harness reads
  the last runs every 50 ms, so it sees every fire, and the ledger records by task id;
* failover, ``--failovers`` times: the leader (found from the lease's ``host:pid:nonce``) is
  killed with SIGKILL at a random moment between two ticks; timed from just before the kill to
  another process holding the lease (polled every 5 ms) and to the first message the new
  leader sends (its ledger ``enqueued_at``). A new scheduler is started after each trial, so
  there are always ``--schedulers`` of them.

Run it from the repository with the project's venv::

    python benchmarks/scheduler.py                     # 500 fires, 3 failovers: about 1.5 minutes
    python benchmarks/scheduler.py --fires 200 --failovers 1 --json /tmp/scheduler.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import apscheduler
import redis
from common import free_port, machine_info, percentile

from aury_tasks import TaskManager, TaskSettings
from aury_tasks.broker.embedded import EmbeddedServer, start_server
from aury_tasks.core import keys
from aury_tasks.scheduler.manager import SchedulerManager
from aury_tasks.scheduler.triggers import TriggerSpec, next_fire_times
from aury_tasks.tasks.task import Task

#: The queue and the registered name of the task every job sends.
QUEUE = "bench"
TICK_ACTOR = "bench_scheduler.tick"
#: Job ids: the 1-second jobs, and the crons that do not fire during the run.
FAST_PREFIX = "fast-"
CRON_PREFIX = "cron-"
#: How often the harness reads the last runs (s): well under the 1 s between two fires of a job.
RUNS_POLL = 0.05
#: How often the harness reads the lease, and the ledger, while it waits for a takeover (s).
LEASE_POLL = 0.005
LEDGER_POLL = 0.01
#: Seconds of firing left out after the leader's first fire (its catch-up of the ticks planned
#: before it started, and its first sends) before the delay window opens.
WARMUP_SECONDS = 3
#: Seconds after a kill within which a record can still be the dead leader's (no new leader can
#: hold the lease this soon: the shortest TTL is 1 s).
KILL_MARGIN = 0.05
#: Seconds of firing looked at after the first send of a new leader (its first on-time ticks).
AFTER_TAKEOVER = 2.5

TASK_MODULE = f'''"""The task the scheduler benchmark's jobs send, found by ``aum scheduler --modules``."""

from aury_tasks import TaskManager

tm = TaskManager.get_instance()


@tm.conditional_task(queue_name="{QUEUE}", actor_name="{TICK_ACTOR}")
def tick(job_id: str) -> None:
    """Nothing: no worker runs during the benchmark."""
'''


class BenchmarkError(RuntimeError):
    """The run could not be completed (a scheduler died, fires went missing)."""


@dataclass
class Fire:
    """One fire of a 1-second job, as the harness saw it."""

    job_id: str
    #: UNIX times: planned, just before the enqueue (the ledger), just after it (the last run).
    planned_at: float
    enqueued_at: float
    fired_at: float
    task_id: str

    @property
    def start_delay_ms(self) -> float:
        return (self.enqueued_at - self.planned_at) * 1000

    @property
    def done_delay_ms(self) -> float:
        return (self.fired_at - self.planned_at) * 1000


@dataclass
class FailoverTrial:
    """What one kill of the leader gave."""

    killed: str
    new_leader: str
    #: Seconds from just before the kill to another holder of the lease, and to its first send.
    lease_s: float
    first_send_s: float
    #: Ticks of the 1-second jobs planned between the kill and that first send: sent late (the
    #: catch-up, one per job with coalesce) or never (coalesced away).
    ticks_while_down: int
    sent_late: int
    skipped: int
    #: Ticks planned just before the kill that were claimed and never sent (killed mid-fire).
    claimed_not_sent: int
    #: Largest planned → enqueue delay of the catch-up sends (s).
    catch_up_late_s: float
    #: Largest delay (ms) of the ticks planned in the ``AFTER_TAKEOVER`` seconds after the first send.
    on_time_max_ms: float


# The scheduler processes


@dataclass
class SchedulerProcess:
    """One ``aum scheduler`` subprocess and its log file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().strip().splitlines()[-lines:])


class Fleet:
    """The ``aum scheduler`` processes of the run: started, killed, checked, stopped."""

    def __init__(self, modules_dir: Path, workdir: Path, url: str, lease_ttl: float) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASK_")}
        self.env = {**env, "TASK_BROKER_URL": url, "TASK_DATA_DIR": str(workdir / ".aum"),
                    "PYTHONUNBUFFERED": "1"}  # fmt: skip
        self.argv = [sys.executable, "-m", "aury_tasks.cli", "scheduler", "--modules", str(modules_dir),
                     "--lease-ttl", f"{lease_ttl:g}"]  # fmt: skip
        self.workdir = workdir
        self.processes: list[SchedulerProcess] = []

    def start(self) -> SchedulerProcess:
        """Start one scheduler (in its own session: a Ctrl-C reaches the harness only)."""
        log_path = self.workdir / f"scheduler-{len(self.processes) + 1}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(self.argv, cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=log, start_new_session=True)  # fmt: skip
        started = SchedulerProcess(process, log_path)
        self.processes.append(started)
        return started

    def wait_ready(self, started: list[SchedulerProcess], timeout: float = 60.0) -> None:
        """Wait until each of ``started`` leads or stands by (it has looked at the lease)."""
        deadline = time.monotonic() + timeout
        for scheduler in started:
            while not any(word in scheduler.log_text() for word in (" leads: ", " stands by: ")):
                self.check()
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"scheduler {scheduler.pid} did not start:\n{scheduler.log_tail()}")
                time.sleep(0.05)

    def by_pid(self, pid: int) -> SchedulerProcess:
        for scheduler in self.processes:
            if scheduler.pid == pid and not scheduler.killed:
                return scheduler
        raise BenchmarkError(f"the lease is held by pid {pid}, not one of the benchmark's schedulers")

    def kill(self, scheduler: SchedulerProcess) -> None:
        scheduler.killed = True
        os.kill(scheduler.pid, signal.SIGKILL)
        scheduler.process.wait()

    def check(self) -> None:
        """Fail if a scheduler exited that the harness did not kill."""
        for scheduler in self.processes:
            if not scheduler.killed and scheduler.process.poll() is not None:
                raise BenchmarkError(
                    f"scheduler {scheduler.pid} exited with code {scheduler.process.returncode}:\n"
                    + scheduler.log_tail()
                )

    def stop(self) -> None:
        """SIGTERM every scheduler still running (it gives the lease up), SIGKILL after 10 s."""
        running = [s for s in self.processes if s.process.poll() is None]
        for scheduler in running:
            scheduler.process.send_signal(signal.SIGTERM)
        for scheduler in running:
            try:
                scheduler.process.wait(10)
            except subprocess.TimeoutExpired:
                scheduler.process.kill()
                scheduler.process.wait()


class RunsWatcher:
    """Reads the last-runs hash every ``RUNS_POLL`` seconds and keeps every run it sees.

    A job's entry is replaced at each of its fires, a second apart, so every fire is seen (a
    claimed fire the watcher never sees was not sent, or its run was not recorded).
    """

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True)
        #: (job id, planned time in ms) -> the last run's fields.
        self.runs: dict[tuple[str, int], dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="runs-watcher", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.client.close()

    def _watch(self) -> None:
        try:
            while not self._stop.is_set():
                for job_id, text in self.client.hgetall(keys.DEFAULT.scheduler_runs()).items():
                    run = json.loads(text)
                    self.runs.setdefault((job_id, round(run["planned_at"] * 1000)), run)
                self._stop.wait(RUNS_POLL)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise BenchmarkError(f"reading the last runs failed: {self.error!r}")

    def first_seen(self) -> bool:
        return any(job_id.startswith(FAST_PREFIX) for job_id, _ in list(self.runs))


# Setting up


def write_task_module(workdir: Path) -> Path:
    """Write the tick task's module; return the ``--modules`` directory."""
    modules_dir = workdir / "bench_modules"
    (modules_dir / "bench_scheduler").mkdir(parents=True)
    (modules_dir / "bench_scheduler" / "tasks.py").write_text(TASK_MODULE)
    return modules_dir


def make_manager(url: str, workdir: Path) -> tuple[TaskManager, Task[Any, Any]]:
    """The default TaskManager in producer mode on ``url``, with the tick task registered."""
    for key in [k for k in os.environ if k.startswith("TASK_")]:
        del os.environ[key]
    settings = TaskSettings.load(_env_file=None, broker_url=url, data_dir=str(workdir / ".aum"))
    tm = TaskManager.get_instance()
    tm.configure(settings=settings, run_mode="producer")

    @tm.conditional_task(queue_name=QUEUE, actor_name=TICK_ACTOR)
    def tick(job_id: str) -> None:
        pass

    return tm, tick


def cron_expressions(count: int, now: datetime) -> list[str]:
    """``count`` daily, weekly and monthly crontabs that do not fire this hour or the next (UTC)."""
    hours = [h for h in range(24) if h not in (now.hour, (now.hour + 1) % 24)]
    expressions = []
    for i in range(count):
        minute, hour = (i * 7) % 60, hours[i % len(hours)]
        kind = i % 3
        if kind == 0:
            expressions.append(f"{minute} {hour} * * *")
        elif kind == 1:
            expressions.append(f"{minute} {hour} * * {i % 7}")
        else:
            expressions.append(f"{minute} {hour} {1 + i % 28} * *")
    return expressions


def register_jobs(tick: Task[Any, Any], jobs: int, fast_jobs: int) -> tuple[list[str], float]:
    """Add the 1-second jobs and the crons; return the fast job ids and the seconds it took."""
    scheduler = SchedulerManager.get_instance()
    scheduler.clear()
    started = time.perf_counter()
    fast_ids = [f"{FAST_PREFIX}{i:03d}" for i in range(fast_jobs)]
    for job_id in fast_ids:
        scheduler.add_job(tick.send, interval=1, id=job_id, args=[job_id])
    for i, expression in enumerate(cron_expressions(jobs - fast_jobs, datetime.now(timezone.utc))):
        job_id = f"{CRON_PREFIX}{i:04d}"
        scheduler.add_job(tick.send, cron=expression, id=job_id, args=[job_id])
    return fast_ids, time.perf_counter() - started


# Measuring


def holder_pid(holder: str) -> int:
    """The pid in a lease value ``host:pid:nonce``."""
    return int(holder.rsplit(":", 2)[1])


def wait_for_leader(client: redis.Redis, fleet: Fleet, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        holder = client.get(keys.DEFAULT.scheduler_leader())
        if holder:
            return str(holder)
        fleet.check()
        if time.monotonic() > deadline:
            raise BenchmarkError("no scheduler took the lease")
        time.sleep(LEASE_POLL)


def claimed_ticks(client: redis.Redis, job_ids: list[str]) -> set[tuple[str, int]]:
    """Every fire claim of ``job_ids`` in Redis: (job id, planned time in ms)."""
    claims = set()
    for job_id in job_ids:
        pattern = keys.DEFAULT.scheduler_fire(job_id, 0).removesuffix("0") + "*"
        for key in client.scan_iter(match=pattern, count=1000):
            claims.add((job_id, int(str(key).rsplit(":", 1)[1])))
    return claims


def fires_from_runs(
    tm: TaskManager, runs: dict[tuple[str, int], dict[str, Any]], wanted: list[tuple[str, int]]
) -> dict[tuple[str, int], Fire]:
    """The fires of ``wanted`` ticks the watcher saw, with their ledger records' ``enqueued_at``."""
    seen = [(tick, runs[tick]) for tick in wanted if tick in runs]
    records = {record.id: record for record in tm.store.get_many(run["task_id"] for _, run in seen)}
    fires = {}
    for (job_id, planned_ms), run in seen:
        record = records.get(run["task_id"])
        if record is None or record.enqueued_at is None:
            raise BenchmarkError(f"the task {run['task_id']} sent by {job_id} has no ledger record")
        if record.metadata.get("scheduled_job") != job_id:
            raise BenchmarkError(f"the task {record.id} was not sent by {job_id}: {record.metadata}")
        fires[(job_id, planned_ms)] = Fire(job_id, planned_ms / 1000, record.enqueued_at, run["fired_at"],
                                           record.id)  # fmt: skip
    return fires


def planned_ticks(specs: dict[str, TriggerSpec], start: float, end: float) -> list[tuple[str, int]]:
    """The ticks of each job planned in ``(start, end]``: (job id, planned time in ms)."""
    moment = datetime.fromtimestamp(start, timezone.utc)
    ticks = []
    for job_id, spec in specs.items():
        for when in next_fire_times(spec, math.ceil(end - start) + 2, now=moment):
            if start < when.timestamp() <= end:
                ticks.append((job_id, round(when.timestamp() * 1000)))
    return ticks


def measure_delays(
    args: argparse.Namespace,
    client: redis.Redis,
    tm: TaskManager,
    fleet: Fleet,
    watcher: RunsWatcher,
    specs: dict[str, TriggerSpec],
) -> tuple[list[Fire], dict[str, Any]]:
    """Wait for the leader's first fires, then collect every fire planned in a window of whole ticks."""
    deadline = time.monotonic() + 60
    while not watcher.first_seen():
        fleet.check()
        watcher.check()
        if time.monotonic() > deadline:
            raise BenchmarkError("the leader sent nothing in 60 s")
        time.sleep(RUNS_POLL)
    leader = wait_for_leader(client, fleet, 5)
    window_start = math.ceil(time.time()) + WARMUP_SECONDS
    window_end = window_start + math.ceil(args.fires / len(specs))
    print(f"delay: {len(specs)} 1-second jobs, ticks planned {window_end - window_start} s from "
          f"{datetime.fromtimestamp(window_start, timezone.utc):%H:%M:%S} UTC", flush=True)  # fmt: skip
    while time.time() < window_end + 1.5:
        fleet.check()
        watcher.check()
        time.sleep(0.2)
    if client.get(keys.DEFAULT.scheduler_leader()) != leader:
        raise BenchmarkError("the leader changed during the delay window")
    # The window holds the ticks planned in [window_start, window_end).
    wanted = planned_ticks(specs, window_start - 0.001, window_end - 0.001)
    claims = claimed_ticks(client, list(specs))
    fires = fires_from_runs(tm, watcher.runs, wanted)
    checks = {
        "ticks_planned": len(wanted),
        "ticks_claimed": sum(tick in claims for tick in wanted),
        "ticks_sent": len(fires),
        "leader": leader,
    }
    if checks["ticks_sent"] < checks["ticks_planned"]:
        unsent, unclaimed = len(wanted) - len(fires), len(wanted) - checks["ticks_claimed"]
        print(f"  WARNING: {unsent} planned tick(s) not sent ({unclaimed} not even claimed)", flush=True)
    return sorted(fires.values(), key=lambda f: (f.planned_at, f.enqueued_at)), checks


def first_send_after(tm: TaskManager, moment: float, fast_jobs: int, timeout: float) -> float:
    """The ``enqueued_at`` of the first tick sent after ``moment`` (read from the ledger)."""
    deadline = time.monotonic() + timeout
    while True:
        page = tm.list_tasks(task_name=TICK_ACTOR, since=moment, page_size=4 * fast_jobs)
        if page.items:
            return min(r.enqueued_at for r in page.items if r.enqueued_at is not None)
        if time.monotonic() > deadline:
            raise BenchmarkError(f"nothing was sent in the {timeout:.0f} s after the kill")
        time.sleep(LEDGER_POLL)


def failover_trial(
    args: argparse.Namespace,
    client: redis.Redis,
    tm: TaskManager,
    fleet: Fleet,
    watcher: RunsWatcher,
    specs: dict[str, TriggerSpec],
    rng: random.Random,
) -> FailoverTrial:
    """Kill the leader at a random moment between two ticks; time the lease and the first send."""
    timeout = 3 * args.lease_ttl + 15
    holder = wait_for_leader(client, fleet, timeout)
    victim = fleet.by_pid(holder_pid(holder))
    time.sleep(math.ceil(time.time()) - time.time() + rng.uniform(0.05, 0.95))
    kill_at = time.time()
    fleet.kill(victim)
    deadline = time.monotonic() + timeout
    while True:
        new_holder = client.get(keys.DEFAULT.scheduler_leader())
        if new_holder and new_holder != holder:
            lease_at = time.time()
            break
        if time.monotonic() > deadline:
            raise BenchmarkError(f"nobody took the lease in the {timeout:.0f} s after the kill")
        time.sleep(LEASE_POLL)
    first_send = first_send_after(tm, kill_at + KILL_MARGIN, len(specs), timeout)
    time.sleep(max(0.0, first_send + AFTER_TAKEOVER + 1.0 - time.time()))
    fleet.check()
    watcher.check()

    down = planned_ticks(specs, kill_at, first_send)
    before = planned_ticks(specs, kill_at - 1.0, kill_at)
    after = planned_ticks(specs, first_send, first_send + AFTER_TAKEOVER)
    claims = claimed_ticks(client, list(specs))
    fires = fires_from_runs(tm, watcher.runs, down + before + after)
    late = [fires[tick] for tick in down if tick in fires]
    on_time = [fires[tick].done_delay_ms for tick in after if tick in fires]
    if len(on_time) < len(after):
        raise BenchmarkError(f"{len(after) - len(on_time)} tick(s) after the takeover were not sent")
    return FailoverTrial(
        killed=holder,
        new_leader=str(new_holder),
        lease_s=lease_at - kill_at,
        first_send_s=first_send - kill_at,
        ticks_while_down=len(down),
        sent_late=len(late),
        skipped=sum(tick not in claims for tick in down),
        claimed_not_sent=sum(tick in claims and tick not in fires for tick in before + down),
        catch_up_late_s=max((f.enqueued_at - f.planned_at for f in late), default=math.nan),
        on_time_max_ms=max(on_time, default=math.nan),
    )


def burst_ranks(fires: list[Fire]) -> dict[int, list[Fire]]:
    """The fires of each tick ordered by when their enqueue started: rank (1 = first) -> fires."""
    by_tick: dict[float, list[Fire]] = {}
    for fire in fires:
        by_tick.setdefault(fire.planned_at, []).append(fire)
    ranks: dict[int, list[Fire]] = {}
    for tick_fires in by_tick.values():
        for rank, fire in enumerate(sorted(tick_fires, key=lambda f: f.enqueued_at), start=1):
            ranks.setdefault(rank, []).append(fire)
    return ranks


# Reporting


def aligned(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()  # fmt: skip

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def stats(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
            "max": max(values, default=math.nan)}  # fmt: skip


def summarize(fires: list[Fire], trials: list[FailoverTrial]) -> list[dict[str, Any]]:
    """The table's rows: label, unit, figures, target (``None``: information only), whether met."""
    series: list[tuple[str, str, list[float], float | None, str]] = [
        ("firing delay: planned → enqueue starts (ledger enqueued_at)", "ms",
         [f.start_delay_ms for f in fires], 50.0, "p99"),
        ("firing delay: planned → enqueued, round trip done (fired_at)", "ms",
         [f.done_delay_ms for f in fires], 50.0, "p99"),
    ]  # fmt: skip
    ranks = burst_ranks(fires)
    if len(ranks) > 1:
        first, last = min(ranks), max(ranks)
        series += [
            (f"  first of each tick's {last} fires: planned → enqueue starts", "ms",
             [f.start_delay_ms for f in ranks[first]], None, "p99"),
            (f"  last of each tick's {last} fires: planned → enqueue starts", "ms",
             [f.start_delay_ms for f in ranks[last]], None, "p99"),
        ]  # fmt: skip
    series.append(("  enqueue round trip (fired_at - enqueued_at)", "ms",
                   [(f.fired_at - f.enqueued_at) * 1000 for f in fires], None, "p99"))  # fmt: skip
    if trials:
        series += [
            ("failover: kill → another scheduler holds the lease", "s",
             [t.lease_s for t in trials], 5.0, "max"),
            ("failover: kill → first message sent by the new leader", "s",
             [t.first_send_s for t in trials], 5.0, "max"),
            ("  lease taken → first message sent (loading the jobs)", "s",
             [t.first_send_s - t.lease_s for t in trials], None, "max"),
        ]  # fmt: skip
    rows = []
    for label, unit, values, target, stat in series:
        figures = stats(values)
        met = None if target is None or not values else figures[stat] < target
        rows.append({"label": label, "unit": unit, **figures, "target": target, "stat": stat, "met": met})
    return rows


def summary_table(rows: list[dict[str, Any]]) -> str:
    headers = ["metric", "n", "p50", "p99", "max", "target", "met?"]
    lines = []
    for row in rows:
        digits = ".1f" if row["unit"] == "ms" else ".2f"
        unit = " " + row["unit"]
        figures = [format(row[name], digits) + unit for name in ("p50", "p99", "max")]
        target = "-" if row["target"] is None else f"{row['stat']} < {row['target']:g}{unit}"
        met = "-" if row["met"] is None else ("PASS" if row["met"] else "MISS")
        lines.append([row["label"], str(row["n"]), *figures, target, met])
    return aligned(headers, lines, right={1, 2, 3, 4})


def trials_table(trials: list[FailoverTrial]) -> str:
    headers = ["trial", "killed pid", "new leader pid", "lease s", "first send s", "ticks while down",
               "sent late", "coalesced away", "claimed, not sent", "catch-up late s",
               "next ticks max ms"]  # fmt: skip
    rows = [[str(i), str(holder_pid(t.killed)), str(holder_pid(t.new_leader)), f"{t.lease_s:.3f}",
             f"{t.first_send_s:.3f}", str(t.ticks_while_down), str(t.sent_late), str(t.skipped),
             str(t.claimed_not_sent), f"{t.catch_up_late_s:.2f}", f"{t.on_time_max_ms:.1f}"]
            for i, t in enumerate(trials, start=1)]  # fmt: skip
    return aligned(headers, rows, right=set(range(11)))


def reproduce_command(args: argparse.Namespace) -> str:
    options = ["jobs", "fast_jobs", "fires", "failovers", "schedulers", "lease_ttl", "seed"]
    return "python benchmarks/scheduler.py " + " ".join(
        f"--{name.replace('_', '-')} {getattr(args, name):g}" for name in options
    )


def report(
    args: argparse.Namespace,
    info: dict[str, Any],
    fires: list[Fire],
    checks: dict[str, Any],
    trials: list[FailoverTrial],
) -> None:
    rows = summarize(fires, trials)
    print()
    sent, planned = checks["ticks_sent"], checks["ticks_planned"]
    print(f"{args.jobs:,} registered jobs ({args.fast_jobs} every second, {args.jobs - args.fast_jobs:,} "
          f"crons not due), {args.schedulers} aum scheduler processes, lease TTL {args.lease_ttl:g} s; "
          f"{sent} of {planned} planned ticks sent in the delay window")  # fmt: skip
    print(summary_table(rows))
    print(f"fire claims of the 1-second jobs: {checks['claims_of_fast_jobs']:,}; messages they sent: "
          f"{checks['messages_sent']:,} (never more: no tick is sent twice)")  # fmt: skip
    if trials:
        print()
        print(trials_table(trials))
    print()
    print(
        f"machine: {info['cpus']} CPU(s) {info['cpu']}, load at start {info['load_average']}; "
        f"{info['platform']}; Python {info['python']}; aury-tasks {info['aury_tasks']}; "
        f"APScheduler {info['apscheduler']}; redis-py {info['redis_py']}; {info['server']}; "
        f"jobs registered in {info['register_seconds']:.1f} s; run took {info['run_seconds']:.0f} s"
    )
    print(f"reproduce: {reproduce_command(args)}")
    if args.json:
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        payload = {
            "config": config,
            "machine": info,
            "summary": rows,
            "checks": checks,
            "fires": [{**asdict(f), "start_delay_ms": f.start_delay_ms, "done_delay_ms": f.done_delay_ms}
                      for f in fires],
            "failovers": [asdict(t) for t in trials],
        }  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"saved: {args.json}")


# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Scheduler firing delay (planned time → message enqueued) with many registered jobs, "
        "and failover time after killing the leader, with real aum scheduler processes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--jobs", type=int, default=1_000, help="jobs registered in all (1-second jobs included)")
    add("--fast-jobs", type=int, default=10, help="of them, jobs firing every second (the rest: crons)")
    add("--fires", type=int, default=500, help="fires of the 1-second jobs to measure, at least")
    add("--failovers", type=int, default=3, help="times the leader is killed (SIGKILL); 0: none")
    add("--schedulers", type=int, default=3, help="aum scheduler processes running")
    add("--lease-ttl", type=float, default=3.0, help="the schedulers' --lease-ttl (seconds)")
    add("--seed", type=int, default=1, help="seed of the moments the leader is killed")
    add("--json", type=Path, default=None, metavar="PATH", help="also save the results here")
    add("--keep-workdir", action="store_true", help="keep the temporary directory (scheduler, server logs)")
    args = parser.parse_args(argv)
    for name in ("jobs", "fast_jobs", "fires", "schedulers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    if args.fast_jobs > args.jobs:
        parser.error("--fast-jobs must not exceed --jobs")
    if args.failovers < 0:
        parser.error("--failovers must not be negative")
    if args.failovers and args.schedulers < 2:
        parser.error("a failover needs --schedulers 2 or more")
    if not 1 <= args.lease_ttl <= 300:
        parser.error("--lease-ttl is 1 to 300 seconds (as aum scheduler takes it)")
    return args


def run(
    args: argparse.Namespace, server: EmbeddedServer, workdir: Path, fleet: Fleet, watcher: RunsWatcher
) -> tuple[list[Fire], dict[str, Any], list[FailoverTrial], float]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    tm, tick = make_manager(server.url, workdir)
    try:
        fast_ids, register_seconds = register_jobs(tick, args.jobs, args.fast_jobs)
        scheduler = SchedulerManager.get_instance()
        specs = {job_id: scheduler.get_job(job_id).trigger for job_id in fast_ids}
        print(f"registered {args.jobs:,} jobs in {register_seconds:.1f} s; starting {args.schedulers} "
              "schedulers", flush=True)  # fmt: skip
        watcher.start()
        fleet.wait_ready([fleet.start() for _ in range(args.schedulers)])
        fires, checks = measure_delays(args, client, tm, fleet, watcher, specs)
        rng = random.Random(args.seed)
        trials = []
        for number in range(1, args.failovers + 1):
            trial = failover_trial(args, client, tm, fleet, watcher, specs, rng)
            trials.append(trial)
            print(f"failover {number}: lease taken after {trial.lease_s:.2f} s, first send after "
                  f"{trial.first_send_s:.2f} s", flush=True)  # fmt: skip
            fleet.wait_ready([fleet.start()])
        checks["claims_of_fast_jobs"] = len(claimed_ticks(client, fast_ids))
        checks["messages_sent"] = tm.list_tasks(task_name=TICK_ACTOR, page_size=1).total
        if checks["messages_sent"] > checks["claims_of_fast_jobs"]:
            raise BenchmarkError(f"{checks['messages_sent']} messages for {checks['claims_of_fast_jobs']} "
                                 "claimed ticks: a tick was sent twice")  # fmt: skip
        return fires, checks, trials, register_seconds
    finally:
        client.close()
        tm.close()


def stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that the schedulers and the server are stopped on the way out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    began = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="aury-scheduler-bench-"))
    server = start_server(workdir / "redis", port=free_port())
    fleet = Fleet(write_task_module(workdir), workdir, server.url, args.lease_ttl)
    watcher = RunsWatcher(server.url)
    try:
        info = machine_info(server, apscheduler=apscheduler.__version__)
        print(f"# {server.version} at {server.url}; workdir {workdir}", flush=True)
        fires, checks, trials, register_seconds = run(args, server, workdir, fleet, watcher)
        info.update(register_seconds=register_seconds, run_seconds=time.perf_counter() - began)
        report(args, info, fires, checks, trials)
        return 0
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        args.keep_workdir = True
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        fleet.stop()
        watcher.stop()
        server.stop()
        if args.keep_workdir:
            print(f"workdir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
