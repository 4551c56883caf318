"""Dramatiq middleware that aury-tasks adds to every broker it builds."""

from __future__ import annotations

from .log_context import LogContext

__all__ = ["LogContext"]
