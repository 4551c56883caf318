"""Imported at start-up by every Python process of a rig host whose wall clock libfaketime skews.

The host runs with ``FAKETIME_DONT_FAKE_MONOTONIC=1``, so that the monotonic clock, and with it
every timed wait of Python's locks, conditions and queues (``sem_clockwait`` on
``CLOCK_MONOTONIC``, which libfaketime 0.9.10 does not intercept), stays real. But libfaketime's
``clock_nanosleep`` then rewrites the absolute monotonic deadline Python's ``time.sleep`` gives
it into a negative time and fails with EINVAL (every sleep, ``time.sleep(0)`` included). So
``time.sleep`` sleeps in ``select`` here, a relative timeout, retried after a signal (PEP 475),
which libfaketime passes through unchanged. Only ``sleep`` is replaced: the wall clock stays
libfaketime's.
"""

from __future__ import annotations

import select
import time


def _sleep(seconds: float) -> None:
    """``time.sleep`` without ``clock_nanosleep`` (see the module's text)."""
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], seconds)


time.sleep = _sleep
