"""The REST API, dashboard and metrics of ``aum serve`` (extra ``api``: FastAPI, uvicorn,
prometheus-client).

>>> from aury_tasks.api import create_app
>>> app = create_app()          # serve with uvicorn, or mount in an existing app
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
