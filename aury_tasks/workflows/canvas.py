"""The canvas: signatures and the ways to combine them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..task import Task


@dataclass(frozen=True)
class Signature:
    """A task with its arguments, not sent yet: one step of a workflow (``task.s()``, ``task.si()``)."""

    task: Task[Any, Any]
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: When true the step ignores the previous step's result.
    immutable: bool = False
