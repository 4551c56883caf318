"""What the tasks' own evidence says: who ran which tag when, and the scenario's figures from it.

The evidence is the JSON lines of ``tests/fixtures/scale_modules/scale/tasks.py``, one file per
host. Every time is put on the real clock (a skewed host's ``t`` minus its ``skew``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Where ``run.py`` wants each scenario's row (one JSON object per line); unset: not written.
REPORT_ENV = "AURY_SCALE_REPORT"


@dataclass(frozen=True)
class Run:
    """One run of a tag: where, and when it started and ended (real clock; ``end`` None: unfinished)."""

    tag: str
    host: str
    pid: int
    broker_id: str
    start: float
    end: float | None


def read_runs(directory: Path) -> list[Run]:
    """Every run noted in ``directory``'s ``*.jsonl`` files, in start order."""
    lines: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.jsonl")):
        for text in path.read_text().splitlines():
            if text.strip():
                lines.append(json.loads(text))
    return runs_of(lines)


def runs_of(lines: Iterable[dict[str, Any]]) -> list[Run]:
    """Pair each start line with the next end line of the same tag in the same process."""
    open_runs: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    runs: list[Run] = []
    for line in sorted(lines, key=lambda item: item["t"] - item.get("skew", 0.0)):
        key = (line["host"], line["pid"], line["tag"])
        real = line["t"] - line.get("skew", 0.0)
        if line["event"] == "start":
            open_runs[key].append({**line, "t": real})
        elif open_runs[key]:
            begun = open_runs[key].pop(0)
            runs.append(Run(line["tag"], line["host"], line["pid"], line["broker_id"], begun["t"], real))
    for pending in open_runs.values():
        runs += [Run(b["tag"], b["host"], b["pid"], b["broker_id"], b["t"], None) for b in pending]
    return sorted(runs, key=lambda run: run.start)


def by_tag(runs: Iterable[Run]) -> dict[str, list[Run]]:
    """The runs of each tag, in start order."""
    tags: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        tags[run.tag].append(run)
    return dict(tags)


@dataclass
class Tally:
    """What became of the tags sent: done once, done more than once (legitimately or not), lost.

    A second completion of a tag is a legitimate re-run when the tag is in ``allowed`` (it had
    started on a host before that host was cut off: at-least-once); any other is a wrongful
    duplicate.
    """

    sent: int
    completed: int
    duplicated: int
    rerun: int
    lost_tags: list[str]
    duplicated_tags: list[str]

    @property
    def lost(self) -> int:
        return len(self.lost_tags)

    @classmethod
    def of(cls, tags: Iterable[str], runs: Iterable[Run], allowed: Iterable[str] = ()) -> Tally:
        tags, runs_by_tag, allowed = list(tags), by_tag(runs), set(allowed)
        done = {tag: sum(1 for run in runs_by_tag.get(tag, []) if run.end is not None) for tag in tags}
        extra = {tag: count - 1 for tag, count in done.items() if count > 1}
        wrongful = sorted(tag for tag in extra if tag not in allowed)
        return cls(
            sent=len(tags),
            completed=sum(1 for count in done.values() if count),
            duplicated=sum(extra[tag] for tag in wrongful),
            rerun=sum(count for tag, count in extra.items() if tag in allowed),
            lost_tags=[tag for tag, count in done.items() if not count],
            duplicated_tags=wrongful,
        )


@dataclass
class Figures:
    """One scenario's row: sent, completed, lost, wrongfully duplicated, re-run, time to recover."""

    scenario: str
    sent: int = 0
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    rerun: int = 0
    recovery_s: float | None = None
    note: str = ""
    #: ``passed``, ``failed`` or ``error`` (set after the test).
    outcome: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, tally: Tally) -> Figures:
        """Take the counts of ``tally`` (added to any already taken)."""
        self.sent += tally.sent
        self.completed += tally.completed
        self.lost += tally.lost
        self.duplicated += tally.duplicated
        self.rerun += tally.rerun
        return self

    def write(self) -> None:
        """Append this row to the report file, if ``run.py`` asked for one."""
        path = os.environ.get(REPORT_ENV)
        if path:
            with open(path, "a", encoding="utf-8") as report:
                report.write(json.dumps(asdict(self)) + "\n")
