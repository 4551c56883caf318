"""The web dashboard: its page at ``/`` and its files under ``/static``, with strict headers.

The page is a static shell (no token needed to load it); everything it shows comes from the
authenticated API, which it reaches with relative URLs, so the app works mounted under a prefix.
The Content-Security-Policy allows scripts, styles and requests from the app's own origin only:
no inline script, no CDN, no external font.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

#: Where the page, its stylesheet and its scripts are (shipped as package data).
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

#: Sent with the page and every file of the dashboard.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    # Revalidated on every load (ETag), so an upgrade never runs old scripts against a new API.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The dashboard's page (a shell: its data comes from the API once logged in)."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=SECURITY_HEADERS)


class DashboardFiles(StaticFiles):
    """The dashboard's static files, each sent with :data:`SECURITY_HEADERS`."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file at ``path`` (or a 404), with the security headers."""
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        if path.endswith(".js"):  # module scripts need a JavaScript type, whatever mimetypes says
            response.headers["Content-Type"] = "text/javascript; charset=utf-8"
        return response


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard from ``app``: the page at ``/``, its files under ``/static``."""
    app.include_router(router)
    app.mount("/static", DashboardFiles(directory=STATIC_DIR), name="dashboard-static")
