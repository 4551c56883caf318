"""The settings documentation stays complete: every setting is in .env.example and docs/settings.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from aury_tasks.config.settings import TaskSettings

ROOT = Path(__file__).resolve().parents[2]
VARIABLES = [f"TASK_{name.upper()}" for name in TaskSettings.model_fields]


@pytest.mark.parametrize("document", [".env.example", "docs/settings.md"])
def test_every_setting_is_documented(document: str) -> None:
    # Given the document
    text = (ROOT / document).read_text()
    # When / Then every TaskSettings field appears in it under its variable name
    missing = [variable for variable in VARIABLES if variable not in text]
    assert not missing, f"{document} does not mention {missing}"
