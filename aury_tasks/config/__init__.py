"""Configuration: the settings read from ``TASK_*`` and ``.env``, their checked snapshot, logging."""
