"""Dramatiq's ``tests/test_actors.py`` (of the installed version) with its ``stub_broker`` being
aury-tasks's broker on the test Redis."""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest

from .conftest import aury_broker, installed
from .suite import functions_of, load

globals().update(functions_of(load("test_actors")))


@pytest.fixture
def stub_broker(redis_url: str) -> Iterator[dramatiq.Broker]:
    """Dramatiq's ``stub_broker``, here aury-tasks's broker on the test Redis."""
    yield from installed(aury_broker(redis_url))
