"""Dramatiq's ``tests/test_actors.py`` (of the installed version) on Dramatiq's stub broker: the
baseline that tells a fixture of ours at fault from a difference of aury-tasks's broker."""

from __future__ import annotations

from .suite import functions_of, load

globals().update(functions_of(load("test_actors")))
