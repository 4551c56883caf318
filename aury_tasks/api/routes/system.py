"""``/healthz``, ``/metrics`` and ``/api/v1/session`` (the dashboard's login)."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from ..auth import CSRF_COOKIE, SESSION_COOKIE, SESSION_SECONDS, Tokens, authorize
from ..deps import Caller, Manager, Scheduler
from ..schemas import Login

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Health (no token)")
def healthz(tm: Manager) -> JSONResponse:
    """``ok`` when Redis answers and a worker was seen in the last 30 s; ``no_workers`` when none
    was (still ``200``); ``503`` when Redis does not answer."""
    try:
        workers = len(tm.workers())
    except (redis.ConnectionError, redis.TimeoutError):
        return JSONResponse({"status": "redis_unreachable", "redis": False, "workers": None}, status_code=503)
    return JSONResponse({"status": "ok" if workers else "no_workers", "redis": True, "workers": workers})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    dependencies=[Depends(authorize)],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
def metrics(tm: Manager, scheduler: Scheduler) -> Response:
    """The Prometheus exposition of the whole system (queues, tasks, workers, scheduler)."""
    from ...worker.metrics import render_cluster_metrics

    body, content_type = render_cluster_metrics(tm, scheduler)
    return Response(body, media_type=content_type)


@router.post("/api/v1/session", summary="Log in (dashboard)")
def log_in(body: Login, request: Request, response: Response) -> dict[str, Any]:
    """Trade a token for a session cookie and its CSRF token."""
    tokens: Tokens = request.app.state.tokens
    if not tokens.required:
        return {"role": "full", "csrf_token": "", "auth": False}
    role = tokens.role_of(body.token)
    if role is None:
        raise HTTPException(401, "wrong token")
    session, csrf = tokens.open_session(role)
    path = request.scope.get("root_path", "") + "/"
    secure = request.url.scheme == "https"
    response.set_cookie(SESSION_COOKIE, session, max_age=SESSION_SECONDS, path=path, secure=secure,
                        httponly=True, samesite="strict")  # fmt: skip
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=SESSION_SECONDS, path=path, secure=secure, samesite="strict"
    )
    return {"role": role.value, "csrf_token": csrf, "auth": True}


@router.get("/api/v1/session", summary="The current session")
def session(request: Request, access: Caller) -> dict[str, Any]:
    """The caller's role, and its CSRF token when it came with the session cookie."""
    tokens: Tokens = request.app.state.tokens
    cookie = request.cookies.get(SESSION_COOKIE, "")
    csrf = tokens.csrf_token(access.role, cookie) if access.by_cookie else ""
    return {"role": access.role.value, "csrf_token": csrf, "auth": tokens.required}


@router.delete("/api/v1/session", status_code=204, summary="Log out (dashboard)")
def log_out(request: Request) -> Response:
    """Drop the session cookies."""
    response = Response(status_code=204)
    path = request.scope.get("root_path", "") + "/"
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path=path)
    return response
