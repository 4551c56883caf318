"""The worker: the supervisor of ``aum worker``, its processes, recycling, per-queue lanes, metrics."""
