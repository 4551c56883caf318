"""Workflows: signatures, chain, group, chord and batch, with results (Celery's canvas on Dramatiq)."""

from __future__ import annotations

from .canvas import Signature

__all__ = ["Signature"]
