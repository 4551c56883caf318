"""The counting of the many-hosts suite's evidence (``evidence.py``): runs paired, tags tallied.

Fast, no rig: the evidence lines are written here by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from .evidence import Run, Tally, by_tag, read_runs, runs_of


def line(event: str, tag: str, t: float, *, host: str = "w1", pid: int = 1, skew: float = 0.0) -> dict:
    """One evidence line, as ``tests/fixtures/scale_modules/scale/tasks.py`` writes it."""
    return {"event": event, "tag": tag, "host": host, "pid": pid, "broker_id": f"b{pid}",
            "skew": skew, "t": t}  # fmt: skip


def test_a_start_and_its_end_make_one_run_and_a_start_alone_an_unfinished_one() -> None:
    runs = runs_of([line("start", "a", 1.0), line("end", "a", 2.0), line("start", "b", 3.0)])

    assert runs == [Run("a", "w1", 1, "b1", 1.0, 2.0), Run("b", "w1", 1, "b1", 3.0, None)]


def test_a_skewed_host_s_times_are_put_on_the_real_clock() -> None:
    # Given a host 30 s ahead that ran "late" at real time 5, and another that ran "early" at 4
    lines = [line("start", "late", 35.0, host="w3", skew=30.0),
             line("end", "late", 36.0, host="w3", skew=30.0),
             line("start", "early", 4.0), line("end", "early", 4.5)]  # fmt: skip

    # Then the runs are on the real clock, in real start order
    runs = runs_of(lines)
    assert [(run.tag, run.start, run.end) for run in runs] == [("early", 4.0, 4.5), ("late", 5.0, 6.0)]


def test_an_end_pairs_with_the_start_of_the_same_tag_in_the_same_process_only() -> None:
    # Given one tag started in two processes (a redelivery), and only the second one finished
    lines = [line("start", "a", 1.0, pid=1), line("start", "a", 2.0, pid=2), line("end", "a", 3.0, pid=2)]

    runs = runs_of(lines)

    # Then the second process's run is finished, the first's is not
    assert sorted((run.pid, run.end) for run in runs) == [(1, None), (2, 3.0)]


def test_the_tally_counts_lost_tags_wrongful_duplicates_and_allowed_reruns() -> None:
    # Given four tags sent: "a" done once, "b" done twice (it had started on a cut host: allowed),
    # "c" done twice (not allowed), "d" started but never finished
    runs = [Run("a", "w1", 1, "b1", 1.0, 2.0),
            Run("b", "w3", 3, "b3", 1.0, 2.0), Run("b", "w1", 1, "b1", 5.0, 6.0),
            Run("c", "w1", 1, "b1", 1.0, 2.0), Run("c", "w2", 2, "b2", 3.0, 4.0),
            Run("c", "w2", 2, "b2", 5.0, 6.0),
            Run("d", "w2", 2, "b2", 1.0, None)]  # fmt: skip

    tally = Tally.of(["a", "b", "c", "d"], runs, allowed=["b"])

    assert (tally.sent, tally.completed, tally.lost, tally.lost_tags) == (4, 3, 1, ["d"])
    assert (tally.duplicated, tally.duplicated_tags, tally.rerun) == (2, ["c"], 1)


def test_runs_of_tags_not_sent_are_not_counted() -> None:
    runs = [Run("a", "w1", 1, "b1", 1.0, 2.0), Run("other", "w1", 1, "b1", 1.0, 2.0)]

    tally = Tally.of(["a"], runs)

    assert (tally.sent, tally.completed, tally.duplicated, tally.rerun, tally.lost) == (1, 1, 0, 0, 0)


def test_every_host_s_file_is_read(tmp_path: Path) -> None:
    for host, t in (("w1", 1.0), ("w2", 2.0)):
        text = "".join(json.dumps(item) + "\n" for item in (line("start", host, t, host=host),
                                                            line("end", host, t + 1, host=host)))  # fmt: skip
        (tmp_path / f"{host}.jsonl").write_text(text + "\n")

    runs = read_runs(tmp_path)

    assert sorted(by_tag(runs)) == ["w1", "w2"]
    assert all(run.end is not None for run in runs)
