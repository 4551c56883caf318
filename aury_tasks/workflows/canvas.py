"""The canvas: signatures and the ways to combine them (Celery's names, Dramatiq's messages).

>>> chain(fetch.s("https://example.com"), parse.s(), store.s(table="pages")).send()
>>> group(resize.s(path) for path in paths).send().get_results(timeout=60)
>>> chord([count_words.s(doc) for doc in docs], total.s()).send().get_result()

A step made with ``task.s(...)`` receives the previous step's result as its last positional
argument; ``task.si(...)`` ignores it. A group in a chain receives the previous result in every
member and hands the list of its results, in order, to the next step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from ..core.errors import TaskOptionError

if TYPE_CHECKING:
    from ..tasks.manager import TaskManager
    from ..tasks.task import Task
    from .handle import GroupHandle, WorkflowHandle

#: What a chord (or a group) does when a member fails for good: ``"fail"`` (the default) runs no
#: callback and fails the chord with the member's error; ``"include"`` puts
#: ``{"error": {"task_id", "type", "message", "status"}}`` in the member's place and goes on.
MemberFailure = Literal["fail", "include"]


class Canvas:
    """Something a workflow can be made of: a signature, a chain, a group or a chord."""

    def manager(self) -> TaskManager:
        """The manager of the first task in it (all of them must share one broker)."""
        raise NotImplementedError

    def send(self) -> WorkflowHandle:
        """Start the workflow; returns its handle (see :class:`~aury_tasks.workflows.WorkflowHandle`)."""
        return self.manager().send_workflow(self)

    def delay(self) -> WorkflowHandle:
        """The same as :meth:`send` (Celery's name)."""
        return self.send()

    def __or__(self, other: Canvas) -> Chain:
        """``a.s() | b.s()`` is ``chain(a.s(), b.s())``."""
        return chain(self, other)


@dataclass(frozen=True)
class Signature(Canvas):
    """A task with its arguments, not sent yet: one step of a workflow (``task.s()``, ``task.si()``)."""

    task: Task[Any, Any]
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: When true the step ignores the previous step's result.
    immutable: bool = False
    #: Another queue than the task's own.
    queue_name: str | None = None
    #: 0 to 9 (higher runs first); ``None``: the task's own.
    priority: int | None = None

    def set(self, *, queue_name: str | None = None, priority: int | None = None) -> Signature:
        """A copy sent to another queue or with another priority."""
        return replace(
            self,
            queue_name=queue_name if queue_name is not None else self.queue_name,
            priority=priority if priority is not None else self.priority,
        )

    def manager(self) -> TaskManager:
        return self.task.manager

    def __repr__(self) -> str:
        arguments = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task.name}.{'si' if self.immutable else 's'}({', '.join(arguments)})"


@dataclass(frozen=True)
class Chain(Canvas):
    """Steps run one after the other, each result passed on (see :func:`chain`)."""

    steps: tuple[Canvas, ...]

    def manager(self) -> TaskManager:
        return self.steps[0].manager()


@dataclass(frozen=True)
class Group(Canvas):
    """Members run in parallel; their results come back as a list in order (see :func:`group`)."""

    members: tuple[Canvas, ...]
    member_failure: MemberFailure = "fail"

    def manager(self) -> TaskManager:
        return self.members[0].manager()

    def send(self) -> GroupHandle:  # type: ignore[override]
        """Start the group; the handle gives ``get_results()``, ``completed()`` and ``progress()``."""
        return self.manager().send_workflow(self)  # type: ignore[return-value]


@dataclass(frozen=True)
class Chord(Canvas):
    """A group whose callback receives the list of its results (see :func:`chord`)."""

    header: Group
    body: Canvas | None = None

    def manager(self) -> TaskManager:
        return self.header.manager()

    def __call__(self, body: Canvas) -> Chord:
        """``chord(header)(callback)``: Celery's spelling of ``chord(header, callback)``."""
        return replace(self, body=body)


def chain(*steps: Canvas | Iterable[Canvas]) -> Chain:
    """Run ``steps`` in order, each receiving the previous one's result.

    A step that fails for good (after its retries) stops the chain: the steps after it never run
    and are marked ``cancelled``; the chain fails with that step's error. The handle's
    ``get_result()`` is the last step's result.

    >>> chain(extract.s(url), transform.s(), load.s(table="t")).send()
    """
    flat = _canvases(steps)
    if not flat:
        raise TaskOptionError("chain() needs at least one step")
    return Chain(flat)


def group(*members: Canvas | Iterable[Canvas], member_failure: MemberFailure = "fail") -> Group:
    """Run ``members`` in parallel; the result is the list of their results, in order.

    >>> handle = group(resize.s(path) for path in paths).send()
    >>> handle.progress()        # (done, total)
    >>> handle.get_results(timeout=60)
    """
    flat = _canvases(members)
    if member_failure not in ("fail", "include"):
        raise TaskOptionError(f"member_failure is 'fail' or 'include', got {member_failure!r}")
    return Group(flat, member_failure)


def chord(
    header: Group | Iterable[Canvas], body: Canvas | None = None, *, member_failure: MemberFailure = "fail"
) -> Chord:
    """Run ``header`` in parallel, then ``body`` once with the list of their results.

    The callback runs exactly once, even when members are redelivered (an atomic counter per
    group in Redis). By default a member that fails for good means no callback: the chord fails
    with that member's error (``member_failure="include"`` passes an error entry instead).

    >>> chord([count_words.s(doc) for doc in docs], total.s()).send().get_result(timeout=60)
    """
    members = header if isinstance(header, Group) else group(header, member_failure=member_failure)
    if member_failure != "fail" and isinstance(header, Group):
        members = replace(header, member_failure=member_failure)
    return Chord(members, body)


def batch(
    task: Task[Any, Any],
    items: Iterable[Any],
    chunk_size: int = 100,
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
) -> Group:
    """Fan ``items`` out in chunks: ``task(chunk, *args, **kwargs)`` for each chunk, in parallel.

    The handle's ``progress()`` adds up the chunks (finished ones, and the progress the running
    ones report); ``get_results()`` is the list of each chunk's result.

    >>> batch(import_rows, rows, chunk_size=500).send().progress()
    """
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise TaskOptionError(f"batch chunk_size is an integer of 1 or more, got {chunk_size!r}")
    values = list(items)
    chunks = [values[start : start + chunk_size] for start in range(0, len(values), chunk_size)]
    extra = tuple(args)
    return Group(tuple(task.si(chunk, *extra, **dict(kwargs or {})) for chunk in chunks))


class TaskChain:
    """A chain built step by step, for code written in that style.

    Each step runs with exactly the arguments given to :meth:`add` (``pass_result=True`` appends
    the previous step's result too).

    >>> result = await TaskChain().add(process_upload, "file.txt").add(cleanup_temp_files).execute()
    """

    def __init__(self) -> None:
        self._steps: list[Canvas] = []

    def add(self, task: Task[Any, Any], *args: Any, pass_result: bool = False, **kwargs: Any) -> TaskChain:
        """Append ``task(*args, **kwargs)`` as the next step; returns the chain, to add more."""
        self._steps.append(task.s(*args, **kwargs) if pass_result else task.si(*args, **kwargs))
        return self

    def __len__(self) -> int:
        return len(self._steps)

    def chain(self) -> Chain:
        """The steps as a :class:`Chain`."""
        return chain(*self._steps)

    def send(self) -> WorkflowHandle:
        """Start the chain without waiting."""
        return self.chain().send()

    async def execute(self, timeout: float | None = None) -> Any:
        """Start the chain and wait (on the event loop) for the last step's result.

        Raises:
          TaskFailed: with the error of the step that failed.
        """
        return await self.send().result_async(timeout=timeout)


def _canvases(items: Sequence[Canvas | Iterable[Canvas]]) -> tuple[Canvas, ...]:
    """Accept ``f(a, b)``, ``f([a, b])`` and ``f(x for x in …)``; refuse anything not a canvas."""
    if len(items) == 1 and not isinstance(items[0], Canvas):
        items = tuple(items[0])  # type: ignore[arg-type]
    for item in items:
        if not isinstance(item, Canvas):
            hint = " (use task.s(...) to make a step)" if callable(item) else ""
            raise TaskOptionError(
                f"a workflow step must be a signature, chain, group or chord, not {item!r}{hint}"
            )
    return tuple(items)  # type: ignore[arg-type]
