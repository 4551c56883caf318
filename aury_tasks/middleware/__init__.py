"""Dramatiq middleware that aury-tasks adds to every broker it builds."""

from __future__ import annotations

from .flow_control import FlowControl
from .ledger import LedgerWriter, current_run
from .log_context import LogContext
from .retries import CancelAwareRetries

__all__ = ["CancelAwareRetries", "FlowControl", "LedgerWriter", "LogContext", "current_run"]
