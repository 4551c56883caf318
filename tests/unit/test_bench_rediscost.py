"""The pure parts of ``benchmarks/rediscost.py``: parsing INFO, the harness taken out, the breakdown."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from rediscost import Calibration, RedisCost, ServerSample, breakdown


def _info(cpu_main: float, cpu_all: float, **calls: tuple[int, int]) -> dict[str, object]:
    info: dict[str, object] = {
        "used_cpu_user_main_thread": cpu_main / 2,
        "used_cpu_sys_main_thread": cpu_main / 2,
        "used_cpu_user": cpu_all / 2,
        "used_cpu_sys": cpu_all / 2,
        "used_cpu_user_children": 9.0,
    }
    for name, (n, usec) in calls.items():
        info[f"cmdstat_{name}"] = {"calls": n, "usec": usec, "usec_per_call": usec / n}
    return info


def test_parse_reads_main_thread_and_whole_process_cpu_and_commandstats() -> None:
    sample = ServerSample.parse(_info(1.0, 1.5, hlen=(3, 6), evalsha=(2, 40)))
    assert sample.cpu_main == pytest.approx(1.0)
    assert sample.cpu_all == pytest.approx(1.5)
    assert sample.calls == {"hlen": 3, "evalsha": 2}
    assert sample.usec == {"hlen": 6, "evalsha": 40}


def test_a_span_leaves_out_info_and_the_harness_commands_and_their_cpu() -> None:
    before = ServerSample.parse(_info(1.0, 1.0, info=(5, 100), hlen=(10, 10)))
    after = ServerSample.parse(_info(1.1, 1.2, info=(6, 120), hlen=(30, 30), evalsha=(4, 80)))
    calibration = Calibration(sample_cpu=(0.002, 0.003), poll_cpu=(0.001, 0.001))
    cost = RedisCost()
    cost.add(before, after, calibration, Counter(hlen=15))
    assert cost.calls == {"hlen": 5, "evalsha": 4}
    assert cost.usec == {"hlen": 5, "evalsha": 80}
    assert cost.cpu_main == pytest.approx(0.1 - 0.002 - 0.015)
    assert cost.cpu_all == pytest.approx(0.2 - 0.003 - 0.015)
    per_task = cost.per_task(2)
    assert per_task["commands"] == 4.5
    assert per_task["cpu_us"] == pytest.approx(0.083 / 2 * 1e6)


def test_per_task_without_tasks_is_nan() -> None:
    assert all(v != v for v in RedisCost().per_task(0).values())


def test_breakdown_orders_by_calls_and_by_usec() -> None:
    cost = RedisCost(
        calls=Counter(hincrby=18, evalsha=1, zadd=4), usec=Counter(hincrby=13, evalsha=110, zadd=10)
    )
    parts = breakdown(cost, tasks=1, top=2)
    assert [row[0] for row in parts["by_calls"]] == ["hincrby", "zadd"]
    assert [row[0] for row in parts["by_usec"]] == ["evalsha", "hincrby"]
