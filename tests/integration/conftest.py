"""Fixtures of the integration tests: the events fixture tasks record."""

from __future__ import annotations

import pytest
import redis

from .events import EventLog


@pytest.fixture
def events(redis_client: redis.Redis) -> EventLog:
    """The events the fixture tasks record in the (flushed) test Redis."""
    return EventLog(redis_client)
