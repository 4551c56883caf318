"""The app of each process of ``aum serve --workers N``.

With more than one worker process uvicorn starts each from an import string, so the app cannot
be handed over as an object: ``aum serve`` checks the settings, the token and the task modules
once, then passes what the processes need (the env file, the modules directory, whether auth is
off) in ``AURY_TASKS_SERVE``, and each process builds its own app with
:func:`app_from_environment`. The app keeps no state between requests (sessions are signed
cookies), so any process may answer any request.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from fastapi import FastAPI

from ..config.logging import setup_logging
from ..config.settings import TaskSettings
from ..tasks.manager import TaskManager
from ..worker.discovery import import_task_modules
from .app import create_app

#: The variable ``aum serve`` hands its worker processes their options in (JSON).
SERVE_ENV = "AURY_TASKS_SERVE"
#: What uvicorn imports in each worker process.
APP_FACTORY = f"{__name__}:app_from_environment"


@dataclass(frozen=True)
class ServeOptions:
    """What a worker process of ``aum serve`` needs to build the same app as its parent."""

    #: The task modules' directory, already resolved by ``aum serve``.
    modules_dir: str
    #: ``aum --env-file``, if given.
    env_file: str | None = None
    #: ``--insecure-no-auth``.
    insecure_no_auth: bool = False

    def export(self) -> None:
        """Put these options where the worker processes (started after this) read them."""
        os.environ[SERVE_ENV] = json.dumps(asdict(self))


def app_from_environment() -> FastAPI:
    """The app one worker process of ``aum serve --workers N`` serves (uvicorn's factory)."""
    options = ServeOptions(**json.loads(os.environ[SERVE_ENV]))
    overrides: dict[str, object] = {"modules_dir": options.modules_dir}
    if options.env_file:
        overrides["_env_file"] = options.env_file
    settings = TaskSettings.load(**overrides)
    setup_logging(settings.log_level, json=settings.log_json)
    manager = TaskManager.get_instance()
    if not manager.is_initialized:
        manager.configure(settings=settings)
    import_task_modules(settings.modules_dir)
    return create_app(manager, insecure_no_auth=options.insecure_no_auth)
