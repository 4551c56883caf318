"""Scenario 4: one worker host's wall clock 30 s ahead (libfaketime): heartbeats, delays, leases hold.

A time namespace (``unshare --time``) offsets only the monotonic and boot-time clocks, not the
wall clock every timestamp of the toolkit and Dramatiq is taken from, so the skewed host runs
under libfaketime (``FAKETIME=+30s``, its monotonic clock left alone, ``time.sleep`` made to
work: see ``rig.skew_environment``). Its evidence lines carry the skew, so every time below is
on the real clock. Where libfaketime is missing or does not work, the scenario skips, saying why.

What it checks is what the toolkit puts on the Redis server's clock (``aury_tasks.redis.clock``):
the skewed host's heartbeats are the server's time, so nobody is taken for dead; delayed tasks
start at their time wherever they are held; the concurrency lease of a task limited to one run
at a time is not dropped early by the host ahead.
"""

from __future__ import annotations

import itertools
import time

import pytest

from aury_tasks import TaskManager
from aury_tasks.core import keys

from .cluster import HEARTBEAT_TIMEOUT, Cluster
from .evidence import Figures, Tally, by_tag
from .rig import faketime_unavailable
from .steps import send_work, wait_all_done

SKEW = 30.0
DELAY = 4.0
#: How late a delayed task may start on this shared two-core machine.
LATE = 3.0
READY = "Worker process is ready for action"


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.scenario("4. one worker host's clock 30 s ahead")
def test_with_one_host_30_s_ahead_heartbeats_delays_and_leases_still_hold(
    cluster: Cluster, producer: TaskManager, figures: Figures
) -> None:
    reason = faketime_unavailable()
    if reason:
        pytest.skip(reason)
    # Given three worker hosts, the third one's clock 30 s ahead
    hosts = [cluster.rig.add_host("worker1"), cluster.rig.add_host("worker2"),
             cluster.rig.add_host("worker3", skew=SKEW)]  # fmt: skip
    workers = [cluster.start_worker(host, "-c", "4") for host in hosts]
    for worker in workers:
        worker.wait_for_line(READY, timeout=60)

    # When long tasks (over the heartbeat timeout) run on every host, with short ones around them
    long_tags = send_work(producer, "long", 9, 2 * HEARTBEAT_TIMEOUT)
    short_tags = send_work(producer, "short", 150, 0.05, per_second=30)
    # ... and tasks delayed by 4 s, and tasks that may only run one at a time, are sent
    sent_at = time.time()
    delayed_tags = send_work(producer, "delayed", 30, 0.0, delay=DELAY)
    single = producer.get_task("single")
    single_tags = [f"single-{n}" for n in range(6)]
    for tag in single_tags:
        single.send(tag, 0.5)
    every = [*long_tags, *short_tags, *delayed_tags, *single_tags]
    wait_all_done(cluster, every, timeout=90)
    time.sleep(2 * HEARTBEAT_TIMEOUT)  # a worker wrongly taken for dead: its tasks would run again by now
    runs = cluster.runs()

    # Then the skewed host's heartbeats are on the server's clock, not 30 s ahead
    client = producer.broker.client
    seconds, micros = client.time()
    skewed_ids = {run.broker_id for run in runs if run.host == "worker3"}
    beats = [client.zscore(keys.DEFAULT.broker_heartbeats(), broker_id) for broker_id in skewed_ids]
    ahead = max((beat or 0) / 1000 - (seconds + micros / 1e6) for beat in beats) if beats else None
    figures.extra["skewed host's heartbeat ahead s"] = None if ahead is None else round(ahead, 2)
    assert ahead is not None and ahead < 2, f"the skewed host's heartbeat is {ahead} s ahead of the server"
    # ... so no host was taken for dead: every task ran once, the skewed host's among them
    tally = Tally.of(every, runs)
    figures.add(tally)
    hosts_used = {run.host for run in runs}
    figures.extra["tasks on the skewed host"] = sum(1 for run in runs if run.host == "worker3")
    assert tally.lost == 0, tally.lost_tags[:20]
    assert tally.duplicated == 0, f"done twice: {tally.duplicated_tags[:20]}"
    assert "worker3" in hosts_used
    # ... no delayed task started before its time, on any host
    starts = {tag: runs_[0] for tag, runs_ in by_tag(runs).items() if tag in set(delayed_tags)}
    early = sorted(
        round(run.start - sent_at, 2) for run in starts.values() if run.start < sent_at + DELAY - 0.05
    )
    figures.extra["delayed: started early"] = len(early)
    figures.extra["delayed: on the skewed host"] = sum(1 for run in starts.values() if run.host == "worker3")
    latest = max(run.start - sent_at for run in starts.values())
    figures.extra["delayed: latest start s"] = round(latest, 2)
    assert not early, f"delayed tasks started {early} s after their send (delay {DELAY} s)"
    assert latest < DELAY + LATE + 1
    # ... and the concurrency lease held: no two runs of the single task overlapped
    singles = sorted((run for run in runs if run.tag in set(single_tags)), key=lambda run: run.start)
    overlaps = sum(1 for a, b in itertools.pairwise(singles) if a.end is not None and b.start < a.end - 0.05)
    figures.extra["concurrency=1 overlaps"] = overlaps
    assert overlaps == 0
