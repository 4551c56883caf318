"""Delegation: TaskManager members that are its ledger's, ``tm.<name>`` being ``tm.ledger.<name>``.

The read and control side of the ledger is a :class:`~aury_tasks.tasks.ledger.TaskLedger` the
manager holds; the documented ``tm.`` calls stay, one line each, as :class:`Delegated` members
that keep the ledger member's signature and docstring for ``help()``, ``inspect`` and type
checkers.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, cast, overload

if TYPE_CHECKING:
    from .ledger import TaskLedger

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _HoldsLedger(Protocol):
    ledger: TaskLedger


class Delegated(Generic[P, R]):
    """A member of a class holding a ``ledger`` that is the ledger's: ``tm.<name>`` is
    ``tm.ledger.<name>``.

    ``help()``, ``inspect.signature`` and type checkers see the ledger member's docstring and
    signature; on the class it is a function taking the holder as ``self``, as a method would be.

    >>> class TaskManager:
    ...     cancel = Delegated(TaskLedger.cancel)
    """

    def __init__(self, member: Callable[Concatenate[TaskLedger, P], R]) -> None:
        self.name: str = member.__name__
        self.__doc__ = member.__doc__
        self.__wrapped__ = member
        self._on_class = _forwarding(self.name, member)

    @overload
    def __get__(self, holder: None, owner: type[Any] | None = None) -> Callable[Concatenate[Any, P], R]: ...

    @overload
    def __get__(self, holder: _HoldsLedger, owner: type[Any] | None = None) -> Callable[P, R]: ...

    def __get__(self, holder: _HoldsLedger | None, owner: type[Any] | None = None) -> Callable[..., R]:
        if holder is None:
            return self._on_class
        return cast("Callable[P, R]", getattr(holder.ledger, self.name))


class DelegatedProperty(property, Generic[T]):
    """A read-only property of a class holding a ``ledger`` that is the ledger's (``tm.store``)."""

    def __init__(self, member: Callable[[TaskLedger], T]) -> None:
        getter = cast("property", member).fget  # a property object, which type checkers see as its getter
        assert getter is not None
        name = getter.__name__
        super().__init__(lambda holder: getattr(holder.ledger, name))
        self.__doc__ = getter.__doc__  # (on a subclass, property's doc= yields to the class docstring)

    @overload  # type: ignore[override]
    def __get__(self, holder: None, owner: type[Any] | None = None) -> DelegatedProperty[T]: ...

    @overload
    def __get__(self, holder: _HoldsLedger, owner: type[Any] | None = None) -> T: ...

    def __get__(
        self, holder: _HoldsLedger | None, owner: type[Any] | None = None
    ) -> T | DelegatedProperty[T]:
        return cast("T | DelegatedProperty[T]", super().__get__(holder, owner))


def _forwarding(name: str, member: Callable[..., R]) -> Callable[..., R]:
    """A function calling ``holder.ledger.<name>`` with the signature and docstring of ``member``."""
    if inspect.iscoroutinefunction(member):

        async def forward_async(holder: _HoldsLedger, /, *args: Any, **kwargs: Any) -> Any:
            return await getattr(holder.ledger, name)(*args, **kwargs)

        return cast("Callable[..., R]", functools.wraps(member)(forward_async))

    def forward(holder: _HoldsLedger, /, *args: Any, **kwargs: Any) -> R:
        return cast("R", getattr(holder.ledger, name)(*args, **kwargs))

    return functools.wraps(member)(forward)
