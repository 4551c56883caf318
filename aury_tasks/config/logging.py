"""Logging: loguru sinks, stdlib loggers (Dramatiq, APScheduler, pika) routed in, secrets masked.

A library configures no sinks on import; the ``aum`` CLI (or your application) calls
:func:`setup_logging` once.
"""

from __future__ import annotations

import copy
import logging
import sys
from typing import Any, TextIO

from loguru import logger

from ..core.redaction import redact_text

_TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <8}</level> "
    "<cyan>{name}</cyan>{extra[task_context]} - <level>{message}</level>"
)


#: Dramatiq warns about this on every task that returns a value; aury-tasks keeps results itself.
_RESULTS_WARNING = "you haven't added the Results middleware"
#: Dramatiq records that say all there is to say in one line: their traceback is dropped.
_ONE_LINE_RECORDS = ("Received message for undefined actor",)


class InterceptHandler(logging.Handler):
    """Send records of stdlib loggers to loguru, keeping their level and origin."""

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and _RESULTS_WARNING in record.msg:
            return
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno

        def origin(loguru_record: Any) -> None:
            loguru_record["name"] = record.name

        exc_info = record.exc_info
        if exc_info and isinstance(record.msg, str) and record.msg.startswith(_ONE_LINE_RECORDS):
            exc_info = None
        logger.patch(origin).opt(exception=exc_info).log(level, record.getMessage())


def _patch_record(record: Any) -> None:
    record["message"] = redact_text(record["message"])
    # loguru 0.8 also keeps the unformatted message, which JSON lines serialise.
    if isinstance(record.get("template"), str):
        record["template"] = redact_text(record["template"])
    extra = record["extra"]
    if "task_id" in extra:
        extra["task_context"] = f" [{extra['actor']} {extra['task_id']} attempt {extra['attempt']}]"
    else:
        extra["task_context"] = ""
    exception = record["exception"]
    if exception is not None and exception.value is not None:
        # Exceptions can carry URLs too (a failed connection names its target). Log a masked
        # copy: the exception itself may still be raised on to the caller, unchanged.
        args = exception.value.args
        masked = tuple(redact_text(arg) if isinstance(arg, str) else arg for arg in args)
        if masked != args:
            value = copy.copy(exception.value)
            value.args = masked
            record["exception"] = exception._replace(value=value)


def setup_logging(level: str = "INFO", *, json: bool = False, stream: TextIO | None = None) -> None:
    """Configure loguru as the only log output of the process.

    Parameters:
      level: lowest level shown (``TASK_LOG_LEVEL``).
      json: one JSON object a line (``TASK_LOG_JSON``).
      stream: where to write; standard error by default.
    """
    logger.remove()
    logger.configure(patcher=_patch_record)
    sink = stream or sys.stderr
    if json:
        logger.add(sink, level=level, serialize=True, backtrace=False, diagnose=False)
    else:
        logger.add(sink, level=level, format=_TEXT_FORMAT, backtrace=False, diagnose=False, colorize=None)
    stdlib_level = {"TRACE": "DEBUG", "SUCCESS": "INFO"}.get(level, level)
    logging.basicConfig(handlers=[InterceptHandler()], level=stdlib_level, force=True)
    # pika logs every failed connection attempt with a traceback; the broker error says it once.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
