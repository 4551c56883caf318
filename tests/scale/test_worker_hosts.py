"""Scenarios 1 and 2: three worker hosts sharing 30,000 tasks, and one of them cut off for 20 s.

Each host is a network namespace running one ``aum worker`` (see ``rig.py``); what ran where is
read from the tasks' own evidence files, not from Redis (see ``evidence.py``).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from aury_tasks import TaskManager

from .cluster import HEARTBEAT_TIMEOUT, Cluster
from .evidence import Figures, Tally
from .steps import completed, held_by, ledger_counts_by_pid, send_work, wait_for

#: Seconds between two beats of a worker process (a third of the heartbeat timeout).
BEAT = HEARTBEAT_TIMEOUT / 3
#: What a recovery may take beyond its bound on this shared two-core machine.
SLACK = 5.0
#: Seconds scenario 2's tasks run, and the messages a worker thread holds (aum worker's default).
RUN_SECONDS, PREFETCH = 0.5, 4
READY = "Worker process is ready for action"
#: Scenario 1's tasks, and how far each host's share may be from a third of them.
STEADY_COUNT = 30_000
SHARE_TOLERANCE = 0.2


def start_worker_hosts(cluster: Cluster, count: int = 3, *args: str) -> list:
    """``count`` worker hosts, each running ``aum worker -c 4``, ready."""
    hosts = [cluster.rig.add_host(f"worker{number}") for number in range(1, count + 1)]
    workers = [cluster.start_worker(host, "-c", "4", *args) for host in hosts]
    for worker in workers:
        worker.wait_for_line(READY, timeout=60)
    return list(zip(hosts, workers, strict=True))


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.scenario("1. 30,000 tasks, three worker hosts")
def test_30000_tasks_on_three_hosts_run_once_each_shared_evenly_and_the_ledger_agrees(
    cluster: Cluster, producer: TaskManager, figures: Figures
) -> None:
    # Given three worker hosts
    start_worker_hosts(cluster)

    # When 30,000 tasks of 5 ms are sent, in batches of 1,000
    started = time.monotonic()
    work = producer.get_task("work")
    tags = [f"steady-{n}" for n in range(STEADY_COUNT)]
    for first in range(0, len(tags), 1_000):
        work.send_many([(tag, 0.005) for tag in tags[first : first + 1_000]])
    figures.extra["sent in s"] = round(time.monotonic() - started, 1)

    # Then every one is done, once
    wait_for(lambda: len(completed(cluster.runs(), tags)) == len(tags), timeout=200, what="every task",
             every=1.0)  # fmt: skip
    figures.extra["seconds"] = round(time.monotonic() - started, 1)
    runs = cluster.runs()
    tally = Tally.of(tags, runs)
    figures.add(tally)
    assert tally.lost == 0, tally.lost_tags[:20]
    assert tally.duplicated == 0 and tally.rerun == 0, tally.duplicated_tags[:20]
    # ... each host's share within 20 % of a third
    by_host = Counter(run.host for run in runs)
    figures.extra["per host"] = "/".join(str(by_host[name]) for name in sorted(by_host))
    assert set(by_host) == {"worker1", "worker2", "worker3"}
    third = len(tags) / 3
    assert all(abs(count - third) <= SHARE_TOLERANCE * third for count in by_host.values()), dict(by_host)
    # ... and the ledger's successes, per worker process, are the workers' own counts
    host_of = {run.pid: run.host for run in runs}
    ledger = wait_for(lambda: (c := ledger_counts_by_pid(producer)).total() == len(tags) and c,
                      timeout=60, what="every success in the ledger", every=1.0)  # fmt: skip
    assert {host_of[pid]: count for pid, count in ledger.items()} == dict(by_host)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.scenario("2. one worker host cut off for 20 s")
def test_a_cut_host_s_tasks_are_done_elsewhere_and_it_rejoins_without_a_restart(
    cluster: Cluster, producer: TaskManager, figures: Figures
) -> None:
    # Given three worker hosts busy with tasks of 0.5 s
    (_, _), (_, _), (cut_host, cut_worker) = start_worker_hosts(cluster)
    tags = send_work(producer, "before", 240, RUN_SECONDS)
    wait_for(lambda: len([r for r in cluster.runs() if r.host == cut_host.name and r.end]) >= 8,
             timeout=60, what="the host to be cut to finish a few tasks")  # fmt: skip
    cut_ids = {run.broker_id for run in cluster.runs() if run.host == cut_host.name}
    held = held_by(producer.broker.client, cut_ids)
    assert held, "the host to be cut holds nothing"

    # When its link is cut for 20 s
    cut_at = time.time()
    cluster.rig.cut(cut_host)
    # Then what it held is done by the other hosts within the heartbeat bound: taken for dead
    # (a beat and the timeout), then at the queue's head behind what each thread of the others
    # prefetched (PREFETCH tasks), then run
    bound = HEARTBEAT_TIMEOUT + BEAT + PREFETCH * RUN_SECONDS + RUN_SECONDS + SLACK

    def done_elsewhere() -> list[float] | None:
        ends = {
            r.tag: r.end for r in cluster.runs() if r.host != cut_host.name and r.end and r.start > cut_at
        }
        return [ends[tag] for tag in held] if held <= set(ends) else None

    ends = wait_for(done_elsewhere, timeout=60, what="the cut host's tasks to be done elsewhere")
    figures.recovery_s = round(max(ends) - cut_at, 2)
    figures.extra["held at the cut"] = len(held)
    time.sleep(max(0.0, cut_at + 20 - time.time()))
    cluster.rig.restore(cut_host)
    restored_at = time.time()

    # And once the link is back, the cut host takes tasks again, as the same process
    after = send_work(producer, "after", 120, 0.2)
    wait_for(lambda: any(r.host == cut_host.name and r.start > restored_at and r.end for r in cluster.runs()),
             timeout=60, what="the cut host to run a task after the link came back")  # fmt: skip
    assert cut_worker.process.poll() is None
    rejoined = min(r.start for r in cluster.runs() if r.host == cut_host.name and r.start > restored_at)
    figures.extra["rejoined after s"] = round(rejoined - restored_at, 2)
    wait_for(lambda: len(completed(cluster.runs(), [*tags, *after])) == len(tags) + len(after),
             timeout=90, what="every task")  # fmt: skip
    time.sleep(2 * HEARTBEAT_TIMEOUT)  # anything the cut host still holds would run by now
    # ... and nothing it held is done twice unless it had started it before it could be taken for
    # dead (its last beat, at most a beat before the cut, plus the heartbeat timeout)
    runs = cluster.runs()
    started_in_time = {
        r.tag for r in runs if r.host == cut_host.name and r.start < cut_at + HEARTBEAT_TIMEOUT - BEAT
    }
    tally = Tally.of([*tags, *after], runs, allowed=started_in_time & held)
    figures.add(tally)
    late = sorted(r.tag for r in runs if r.host == cut_host.name and r.tag in held and r.start > cut_at)
    figures.extra["held, started on the cut host after the cut"] = len(late)
    assert tally.lost == 0, tally.lost_tags[:20]
    assert tally.duplicated == 0, f"done twice: {tally.duplicated_tags[:20]}"
    assert figures.recovery_s < bound, f"recovered in {figures.recovery_s} s, bound {bound} s"
