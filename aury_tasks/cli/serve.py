"""``aum serve``: the REST API, the dashboard and ``/metrics`` over HTTP (uvicorn)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import click
from loguru import logger

from .. import __version__
from ..core.errors import ConfigError
from ..tasks.manager import TaskManager
from .context import AumContext, modules_option, pass_context
from .ledger import reaching_ledger
from .server_checks import reach_broker

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8686


@click.command(context_settings={"show_default": True})
@click.option("--host", default=DEFAULT_HOST, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, help="Port to listen on.")
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    help="Serve without TASK_API_TOKEN: everyone who reaches the port has full access. Loopback "
    "addresses only.",
)
@click.option(
    "--proxy-headers/--no-proxy-headers",
    default=False,
    help="Trust X-Forwarded-For/-Proto from a reverse proxy on this host (for https session cookies).",
)
@click.option(
    "-w",
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    help="Server processes sharing the port (the API is stateless): more requests a second, one core "
    "each at most.",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    help="Log a line for every request (client, method, path, status; never a token). Off by default, as "
    "in gunicorn: the reverse proxy logs requests, and a line costs ~1 ms of CPU (benchmarks/api.py).",
)
@modules_option
@pass_context
def serve(
    aum: AumContext,
    host: str,
    port: int,
    insecure_no_auth: bool,
    proxy_headers: bool,
    workers: int,
    access_log: bool,
    modules_dir: str | None,
) -> None:
    """Serve the REST API, the web dashboard and Prometheus metrics.

    The dashboard is at /, the API under /api/v1 (OpenAPI document at /api/openapi.json,
    interactive at /api/docs), health at /healthz and metrics at /metrics. Every endpoint but
    /healthz needs TASK_API_TOKEN (full access) or TASK_API_READ_TOKEN (GET requests only) as
    'Authorization: Bearer <token>'; the dashboard logs in with the same tokens.

    Imports the task modules, so that tasks can be sent by name (only registered names are
    accepted). Without TASK_API_TOKEN it refuses to start unless --insecure-no-auth, which only
    listens on a loopback address. Put it behind a reverse proxy for TLS (docs/operating.md).
    Needs the api extra: pip install 'aury-tasks[api]'.

    \b
    Examples:
      TASK_API_TOKEN=$(openssl rand -hex 32) aum serve
      aum serve --host 0.0.0.0 --port 8080
      aum serve --insecure-no-auth          on 127.0.0.1, for a laptop
      aum serve --workers 2                 two server processes, two cores
      curl -H "Authorization: Bearer $TASK_API_TOKEN" localhost:8686/api/v1/queues

    \b
    Exit codes:
      0 stopped   2 bad setting (no token, a non-loopback host with --insecure-no-auth)
      3 a task module failed to import   4 broker unreachable
    """
    try:
        import uvicorn

        from ..api import create_app
    except ImportError as missing:
        raise ConfigError(
            f"aum serve needs the api extra ({missing.name} is not installed): pip install 'aury-tasks[api]'"
        ) from None
    if insecure_no_auth and not _is_loopback(host):
        where = "a loopback address only (127.0.0.1, ::1)"
        raise ConfigError(f"--insecure-no-auth serves on {where}, not {host}")
    tm = aum.with_task_modules(modules_dir)
    app = create_app(tm, insecure_no_auth=insecure_no_auth)
    _reach_servers(tm)
    _log_serving(tm, host, port, open_to_all=insecure_no_auth and not app.state.tokens.required)
    options = _uvicorn_options(host, port, proxy_headers=proxy_headers, access_log=access_log)
    if workers == 1:
        uvicorn.run(app, **options)
    else:
        _serve_in_processes(aum, workers, options, insecure_no_auth=insecure_no_auth)


def _reach_servers(tm: TaskManager) -> None:
    """Fail now, in one line, if the broker or the ledger cannot be reached."""
    reach_broker(tm)
    with reaching_ledger(tm):
        tm.store.client.ping()


def _log_serving(tm: TaskManager, host: str, port: int, *, open_to_all: bool) -> None:
    """Say where the API is served, and warn if anyone who reaches it has full access."""
    shown = f"[{host}]" if ":" in host else host
    logger.info("aury-tasks {} serving http://{}:{}/ (dashboard), /api/v1, /metrics; broker: {}",
                __version__, shown, port, tm.broker_info.describe())  # fmt: skip
    if open_to_all:
        logger.warning("no TASK_API_TOKEN: anyone who reaches {}:{} has full access", shown, port)


def _uvicorn_options(host: str, port: int, *, proxy_headers: bool, access_log: bool) -> dict[str, Any]:
    """The keyword arguments of ``uvicorn.run`` for these options."""
    return {"host": host, "port": port, "log_config": None, "proxy_headers": proxy_headers,
            "forwarded_allow_ips": "127.0.0.1" if proxy_headers else None,
            "server_header": False, "access_log": access_log}  # fmt: skip


def _serve_in_processes(
    aum: AumContext, workers: int, options: dict[str, Any], *, insecure_no_auth: bool
) -> None:
    """Serve from ``workers`` uvicorn processes, each building the app from what this hands over."""
    import uvicorn

    from ..api.serving import APP_FACTORY, ServeOptions

    ServeOptions(
        modules_dir=str(Path(aum.settings.modules_dir).resolve()),
        env_file=str(aum.env_file) if aum.env_file else None,
        insecure_no_auth=insecure_no_auth,
    ).export()
    logger.info("{} server processes share port {}", workers, options["port"])
    uvicorn.run(APP_FACTORY, factory=True, workers=workers, **options)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
