"""The helpers Dramatiq's test modules import from their ``tests/common.py`` (not in the sdist).

Only what ``test_redis.py`` and ``test_actors.py`` use: a worker as a context manager, and the
PyPy skip of the time-limit tests.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import pytest


@contextmanager
def worker(*args: Any, **kwargs: Any) -> Iterator[dramatiq.Worker]:
    """A started :class:`dramatiq.Worker` (same arguments), stopped on leaving the block."""
    started = dramatiq.Worker(*args, **kwargs)
    try:
        started.start()
        yield started
    finally:
        started.stop()


skip_on_pypy = pytest.mark.skipif(
    platform.python_implementation() == "PyPy", reason="Time limits are not supported under PyPy."
)
