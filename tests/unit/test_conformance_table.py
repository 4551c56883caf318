"""Every skip of the conformance tier (Dramatiq's own tests) names a row of the guide's table."""

from __future__ import annotations

import re
from pathlib import Path

from conformance.differences import GUIDE_SECTION, SKIPS

ROOT = Path(__file__).resolve().parents[2]


def _table_rows() -> set[str]:
    """The first cells of the table in the guide's section that GUIDE_SECTION points at."""
    document, anchor = GUIDE_SECTION.split("#")
    text = (ROOT / document).read_text()
    headings = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-"): i
                for i, line in enumerate(text.splitlines()) if line.startswith("#")}  # fmt: skip
    assert anchor in headings, f"{document} has no section #{anchor}"
    rows: set[str] = set()
    for line in text.splitlines()[headings[anchor] + 1 :]:
        if line.startswith("#"):
            break
        if line.startswith("| ") and not line.startswith("|---"):
            rows.add(line.split("|")[1].strip())
    return rows


def test_every_skip_of_dramatiqs_tests_names_a_row_of_the_guides_table() -> None:
    # Given the differences the conformance tier skips Dramatiq's tests for
    named = {difference.name for tests in SKIPS.values() for difference in tests.values()}
    # When the guide's table is read
    rows = _table_rows()
    # Then each has its row, and its reason says where
    assert named - rows == set(), f"not in the table of {GUIDE_SECTION}: {sorted(named - rows)}"
    assert all(GUIDE_SECTION in d.reason for tests in SKIPS.values() for d in tests.values())
