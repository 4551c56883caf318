"""The API's ASGI app: routes, authentication, errors, body cap, CORS."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from .. import __version__
from ..config.settings import TaskSettings
from ..core.errors import ConfigError
from ..scheduler.manager import SchedulerManager
from ..tasks.manager import TaskManager
from .auth import CSRF_HEADER, Tokens
from .body_limit import BodyLimit
from .failures import install_error_handlers
from .routes import queues, registry, schedules, system, tasks, workflows
from .routes.dashboard import install_dashboard

if TYPE_CHECKING:
    from ..config.snapshot import Settings


def create_app(
    task_manager: TaskManager | None = None,
    scheduler: SchedulerManager | None = None,
    *,
    insecure_no_auth: bool = False,
) -> FastAPI:
    """The REST API (and dashboard) as an ASGI app, to serve or to mount in another app.

    Parameters:
      task_manager: default ``TaskManager.get_instance()``; import the task modules before
        sending tasks through the API (only registered task names are accepted).
      scheduler: default the SchedulerManager of ``task_manager``.
      insecure_no_auth: allow running without ``TASK_API_TOKEN``: every caller gets full access.
        Only for a loopback address (``aum serve --insecure-no-auth`` binds to 127.0.0.1).

    Raises:
      ConfigError: ``TASK_API_TOKEN`` is not set and ``insecure_no_auth`` is false.

    >>> app.mount("/tasks", create_app())     # in an existing FastAPI or Starlette app
    """
    tm = task_manager or TaskManager.get_instance()
    scheduler = scheduler or SchedulerManager.get_instance(tm.name)
    settings = _api_settings(tm.settings, insecure_no_auth=insecure_no_auth)
    app = FastAPI(
        title="aury-tasks",
        version=__version__,
        summary="Tasks, queues, workflows and schedules of aury-tasks.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.task_manager = tm
    app.state.scheduler_manager = scheduler
    app.state.tokens = _tokens(settings)
    for module in (tasks, registry, queues, workflows, schedules, system):
        app.include_router(module.router)
    install_dashboard(app)
    install_error_handlers(app)
    _add_middleware(app, settings)
    return app


def _api_settings(settings: Settings, *, insecure_no_auth: bool) -> TaskSettings:
    """``settings``, checked for the API.

    Raises:
      ConfigError: ``TASK_API_READ_TOKEN`` without ``TASK_API_TOKEN``; no ``TASK_API_TOKEN`` and not
        ``insecure_no_auth``; settings that are a worker's snapshot (no ``api_*`` settings).
    """
    full = getattr(settings, "api_token", None)
    read = getattr(settings, "api_read_token", None)
    if full is None and read is not None:
        raise ConfigError("invalid setting TASK_API_READ_TOKEN: it needs TASK_API_TOKEN set as well")
    if full is None and not insecure_no_auth:
        raise ConfigError(
            "TASK_API_TOKEN is not set: set it (16 characters or more, e.g. `openssl rand -hex 32`),"
            " or run `aum serve --insecure-no-auth` on a loopback address"
        )
    if not isinstance(settings, TaskSettings):  # a worker's SettingsSnapshot leaves the api_* settings out
        raise ConfigError("the API reads the api_* settings: configure its TaskManager with TaskSettings")
    return settings


def _tokens(settings: TaskSettings) -> Tokens:
    """The full-access and read-only tokens the API accepts (``None``: not set)."""
    full, read = settings.api_token, settings.api_read_token
    return Tokens(
        full.get_secret_value() if full is not None else None,
        read.get_secret_value() if read is not None else None,
    )


def _add_middleware(app: FastAPI, settings: TaskSettings) -> None:
    """CORS for ``TASK_API_CORS_ORIGINS`` (if any), inside the body cap of ``TASK_API_MAX_BODY_BYTES``."""
    origins = [origin.strip() for origin in settings.api_cors_origins.split(",") if origin.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", CSRF_HEADER],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
