"""``RunMode``: what ``@tm.conditional_task`` turns a function into in this process."""

from __future__ import annotations

from enum import Enum


class RunMode(str, Enum):
    """What ``@tm.conditional_task`` turns a function into."""

    #: Register a Dramatiq actor (``aum worker`` sets this).
    WORKER = "worker"
    #: A light proxy that only sends messages (web apps, scripts; the default).
    PRODUCER = "producer"
    #: ``.send()`` runs the task inline (unit tests of module code).
    EAGER = "eager"
