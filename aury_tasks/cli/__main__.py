"""``python -m aury_tasks.cli``: the same as ``aum``."""

from __future__ import annotations

from . import main

main(prog_name="aum")
