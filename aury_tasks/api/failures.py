"""Every error the API answers, as ``{"error": {"code", "message"}}`` with a meaningful status.

aury-tasks' own exceptions map to statuses by what they mean (an unknown id is ``404``, a task
in the wrong state ``409``, a wrong value ``422``, Redis out of reach ``503``); an unexpected
exception is logged (secrets masked) and answered ``500`` without its details.
"""

from __future__ import annotations

from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from starlette.exceptions import HTTPException

from ..core.errors import (
    AuryTasksError,
    BrokerFeatureUnsupported,
    BrokerUnavailable,
    LedgerUnavailable,
    PayloadTooLarge,
    ScheduledJobNotFound,
    TaskRecordNotFound,
    TaskStateError,
)
from ..core.redaction import redact_text

#: The ``code`` of each status.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    500: "internal",
    501: "unsupported",
    503: "unavailable",
}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's answer for an error."""
    code = CODES.get(status, "error")
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def status_of(error: AuryTasksError) -> int:
    """The HTTP status of one of aury-tasks' own errors."""
    if isinstance(error, (TaskRecordNotFound, ScheduledJobNotFound)):
        return 404
    if isinstance(error, TaskStateError):
        return 409
    if isinstance(error, PayloadTooLarge):
        return 413
    if isinstance(error, BrokerFeatureUnsupported):
        return 501
    if isinstance(error, (BrokerUnavailable, LedgerUnavailable)):
        return 503
    return 422


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` in the API's shape."""

    async def on_http(request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors: list[Any] = list(exc.errors())
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return error_response(400, f"the body is not valid JSON ({first.get('msg', '')})")
        return error_response(422, "; ".join(_describe(error) for error in errors[:3]))

    async def on_ours(request: Request, exc: AuryTasksError) -> JSONResponse:
        return error_response(status_of(exc), redact_text(exc.message))

    async def on_redis(request: Request, exc: redis.RedisError) -> JSONResponse:
        logger.warning("API {} {}: Redis error: {}", request.method, request.url.path, redact_text(str(exc)))
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            return error_response(503, "Redis cannot be reached; try again shortly")
        return error_response(500, "Redis refused the request; see the server log")

    async def on_anything(request: Request, exc: Exception) -> JSONResponse:
        logger.opt(exception=exc).error("API {} {} failed", request.method, request.url.path)
        return error_response(500, "internal error; see the server log")

    app.add_exception_handler(HTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(AuryTasksError, on_ours)  # type: ignore[arg-type]
    app.add_exception_handler(redis.RedisError, on_redis)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_anything)


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",))
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid"))
