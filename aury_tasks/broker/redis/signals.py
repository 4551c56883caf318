"""Dramatiq's middleware signals, sent only to the middleware that handle them.

Dramatiq's ``Broker.emit_before`` and ``emit_after`` look up and call the hook of every
middleware for every signal, although most middleware inherit most hooks as the base class's
no-op. A task sends several signals on the producer (``enqueue``) and on the worker (``process_message``,
``ack``, …), so the lookups add up to about a tenth of a worker's CPU per task. :class:`HandledSignals`
calls the same hooks, in the same order, with the same error handling, but remembers per signal
which middleware override it; the list is rebuilt when middleware are added or removed.

A hook set on a middleware *instance* after the broker first sent that signal is not seen; set
it before, or on the class.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

from dramatiq.middleware import Middleware, MiddlewareError

#: The middleware's bound hooks (``handler.__self__`` is the middleware, for the log).
_Handlers = tuple[MethodType, ...]


class HandledSignals:
    """Broker mix-in: ``emit_before``/``emit_after`` skip the middleware that do not handle the signal."""

    middleware: list[Middleware]
    logger: Any

    def _handlers(self, hook: str) -> _Handlers:
        middleware = self.middleware
        cache: tuple[list[Middleware], int, dict[str, _Handlers]] | None = self.__dict__.get(
            "_signal_handlers"
        )
        if cache is None or cache[0] is not middleware or cache[1] != len(middleware):
            cache = (middleware, len(middleware), {})
            self.__dict__["_signal_handlers"] = cache
        handlers = cache[2].get(hook)
        if handlers is None:
            no_op = getattr(Middleware, hook)
            ordered = middleware if hook.startswith("before_") else list(reversed(middleware))
            handlers = tuple(getattr(m, hook) for m in ordered
                             if hook in vars(m) or getattr(type(m), hook) is not no_op)  # fmt: skip
            cache[2][hook] = handlers
        return handlers

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        """Call ``before_<signal>`` of each middleware that has one, in order (as Dramatiq does)."""
        if not self._emit("before_" + signal, args, kwargs):
            super().emit_before(signal, *args, **kwargs)  # type: ignore[misc]

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        """Call ``after_<signal>`` of each middleware that has one, in reverse order (as Dramatiq does)."""
        if not self._emit("after_" + signal, args, kwargs):
            super().emit_after(signal, *args, **kwargs)  # type: ignore[misc]

    def _emit(self, hook: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Call the handlers of ``hook``; ``False`` if Dramatiq's base middleware has no such hook
        (then Dramatiq's own emit runs it). A before-hook's ``MiddlewareError`` stops the signal;
        any other failure is logged and the next handler runs."""
        if not hasattr(Middleware, hook):
            return False
        for handler in self._handlers(hook):
            try:
                handler(self, *args, **kwargs)
            except Exception as exc:
                if isinstance(exc, MiddlewareError) and hook.startswith("before_"):
                    raise
                self.logger.critical("Unexpected failure in %s of %r.", hook, handler.__self__, exc_info=True)
        return True
