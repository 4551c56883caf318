"""Run the many-hosts scenarios (network namespaces; root) and print their figures as a table.

    python tests/scale/run.py            # all four scenarios (``make scale``)
    python tests/scale/run.py -k skew    # extra arguments go to pytest

Each scenario writes one row (sent, completed, lost, wrongly duplicated, legitimately re-run,
time to recover) to a report file; this prints the rows in scenario order, aligned, and exits
with pytest's exit code. Where namespaces cannot be made the scenarios skip, saying why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.reliability.run import table  # noqa: E402  (the reliability suite's table, other columns)

REPORT_ENV = "AURY_SCALE_REPORT"
COLUMNS = (
    ("scenario", "scenario", "<"),
    ("outcome", "result", "<"),
    ("sent", "sent", ">"),
    ("completed", "completed", ">"),
    ("lost", "lost", ">"),
    ("duplicated", "duplicated", ">"),
    ("rerun", "re-run", ">"),
    ("recovery_s", "recovery s", ">"),
    ("details", "details", "<"),
)


def main(arguments: list[str]) -> int:
    """Run the scenarios with ``arguments`` passed to pytest; print the table; return pytest's code."""
    with tempfile.TemporaryDirectory() as directory:
        report = Path(directory) / "figures.jsonl"
        report.touch()
        command = [sys.executable, "-m", "pytest", "tests/scale", "-m", "slow or not slow", "-q",
                   "-p", "no:cacheprovider", *arguments]  # fmt: skip
        print("running:", " ".join(command[2:]), flush=True)
        code = subprocess.call(command, cwd=ROOT, env={**os.environ, REPORT_ENV: str(report)})
        rows = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    print()
    print(table(rows, COLUMNS) if rows else "no scenario reported figures")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
