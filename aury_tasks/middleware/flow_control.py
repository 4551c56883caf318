"""Worker side of ``rate_limit`` and ``concurrency``: a run over its limit is deferred, not failed."""

from __future__ import annotations

from dramatiq.middleware import Middleware


class FlowControl(Middleware):
    """Applies the ``rate_limit`` and ``concurrency`` options of a task before it runs."""

    @property
    def actor_options(self) -> set[str]:
        return {"rate_limit", "concurrency"}
