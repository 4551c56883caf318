"""Run the whole reliability suite (slow scenarios too) and print its figures as a table.

    python tests/reliability/run.py            # every scenario
    python tests/reliability/run.py -k kill    # extra arguments go to pytest

Each scenario writes one row (sent, completed, dead-lettered, lost, duplicate executions,
recovery time) to a report file; this prints the rows in scenario order, aligned, and exits
with pytest's exit code.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORT_ENV = "AURY_RELIABILITY_REPORT"
COLUMNS = (
    ("scenario", "scenario", "<"),
    ("outcome", "result", "<"),
    ("sent", "sent", ">"),
    ("completed", "completed", ">"),
    ("dead_lettered", "dead-lettered", ">"),
    ("lost", "lost", ">"),
    ("duplicates", "duplicates", ">"),
    ("recovery_s", "recovery s", ">"),
    ("details", "details", "<"),
)


def scenario_number(row: dict) -> tuple[int, str]:
    """Sort key: the number a scenario's label starts with."""
    match = re.match(r"(\d+)", row["scenario"])
    return (int(match.group(1)) if match else 999, row["scenario"])


def cell(row: dict, key: str) -> str:
    """One cell's text."""
    if key == "details":
        extra = ", ".join(f"{name} {value}" for name, value in row.get("extra", {}).items())
        return "; ".join(part for part in (row.get("note", ""), extra) if part)
    value = row.get(key)
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(rows: list[dict], columns: tuple[tuple[str, str, str], ...] = COLUMNS) -> str:
    """The rows as an aligned text table (``columns``: key, title, alignment ``<`` or ``>``)."""
    cells = [[title for _, title, _ in columns]]
    cells += [[cell(row, key) for key, _, _ in columns] for row in sorted(rows, key=scenario_number)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = []
    for number, line in enumerate(cells):
        parts = [
            text.ljust(width) if align == "<" else text.rjust(width)
            for text, width, (_, _, align) in zip(line, widths, columns, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(arguments: list[str]) -> int:
    """Run the suite with ``arguments`` passed to pytest; print the table; return pytest's code."""
    with tempfile.TemporaryDirectory() as directory:
        report = Path(directory) / "figures.jsonl"
        report.touch()
        command = [sys.executable, "-m", "pytest", "tests/reliability", "-m", "slow or not slow", "-q",
                   "-p", "no:cacheprovider", *arguments]  # fmt: skip
        print("running:", " ".join(command[2:]), flush=True)
        code = subprocess.call(command, cwd=ROOT, env={**os.environ, REPORT_ENV: str(report)})
        rows = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    print()
    print(table(rows) if rows else "no scenario reported figures")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
