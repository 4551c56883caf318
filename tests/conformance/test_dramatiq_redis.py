"""Dramatiq's ``tests/test_redis.py`` (of the installed version) against aury-tasks's broker."""

from __future__ import annotations

from .suite import functions_of, load

globals().update(functions_of(load("test_redis")))
