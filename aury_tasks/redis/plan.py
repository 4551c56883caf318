"""Command plans: a Redis read written once, run by a sync client or an asyncio one.

A plan is a generator that yields the steps it needs (a :class:`Command`, a :class:`Batch` of
them in one round trip, a script call as a :class:`~aury_tasks.redis.scripts.Write`, or the
pub/sub steps :class:`Subscribe` and :class:`Listen`) and is sent each step's reply; what it
returns is the read's result. :func:`run` and :func:`run_async` drive it on a ``redis.Redis`` or a
``redis.asyncio.Redis`` client, so a sync method and its ``_async`` twin are one plan:

>>> def status(task_id: str) -> Plan[str | None]:
...     return (yield Command("hget", keys.task_record(task_id), "status"))
>>> run(client, status("t1"))                      # in sync code
>>> await run_async(async_client(url), status("t1"))  # on the event loop

A plan may also yield :class:`Emit` values: :func:`stream` and :func:`stream_async` hand them to
the caller as they come (a subscription to a task's progress is one plan, iterated either way).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio

from .connect import asyncio_client
from .scripts import Write

T = TypeVar("T")


class Command:
    """One Redis command, named by the client method that sends it: ``Command("hget", key, "f")``.

    The reply is what that method returns (redis-py parses it the same way on both clients).
    """

    __slots__ = ("args", "kwargs", "method")

    def __init__(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        self.method = method
        self.args = args
        self.kwargs = kwargs

    def sent_to(self, client: Any) -> Any:
        """Send the command on ``client`` (or queue it on a pipeline)."""
        return getattr(client, self.method)(*self.args, **self.kwargs)


@dataclass(frozen=True, slots=True)
class Batch:
    """Commands sent in one round trip (a pipeline, no transaction); the reply is their replies."""

    commands: Sequence[Command]


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Subscribe the plan's pub/sub connection (opened on first use) to ``channel``."""

    channel: str


@dataclass(frozen=True, slots=True)
class Listen:
    """The next message of the plan's subscriptions, or ``None`` after ``timeout`` seconds."""

    timeout: float


@dataclass(frozen=True, slots=True)
class Emit:
    """A value handed to whoever iterates the plan (:func:`stream`); its reply is ``None``."""

    value: Any


Step = Command | Batch | Write | Subscribe | Listen | Emit
#: A plan returning ``T``.
Plan = Generator[Step, Any, T]


class _Session:
    """One run of a plan on one client: steps the plan, sends its steps, holds its pub/sub connection.

    :meth:`issue` returns a step's reply on a sync client, and an awaitable of it on an asyncio
    client (whose methods, pipelines and pub/sub mirror the sync ones): the one place a step is
    turned into commands, whichever the client. Iterating the session gives the plan's steps,
    each sent the reply stored in :attr:`reply` after the one before.
    """

    def __init__(self, client: redis.Redis | redis.asyncio.Redis, plan: Plan[Any]) -> None:
        self.client = client
        self.plan = plan
        self.on_loop = isinstance(client, redis.asyncio.Redis)
        self.pubsub: Any = None
        #: The reply to send the plan with its next step.
        self.reply: Any = None

    def __iter__(self) -> Iterator[Step]:
        while True:
            try:
                step = self.plan.send(self.reply)
            except StopIteration:
                return
            self.reply = None
            yield step

    def issue(self, step: Step) -> Any:
        if isinstance(step, Write):
            call = step.script.call_async if self.on_loop else step.script
            return call(self.client, step.keys, step.args)  # type: ignore[operator, arg-type]
        if isinstance(step, Batch):
            pipe = self.client.pipeline(transaction=False)
            for command in step.commands:
                command.sent_to(pipe)
            return pipe.execute()
        if isinstance(step, Subscribe):
            if self.pubsub is None:
                self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            return self.pubsub.subscribe(step.channel)
        if isinstance(step, Listen):
            return self.pubsub.get_message(timeout=step.timeout)
        assert isinstance(step, Command), f"a plan yielded {step!r}, not a step"
        return step.sent_to(self.client)

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *_: object) -> None:
        self.plan.close()
        if self.pubsub is not None:
            self.pubsub.close()

    async def __aenter__(self) -> _Session:
        return self

    async def __aexit__(self, *_: object) -> None:
        self.plan.close()
        if self.pubsub is not None:
            await self.pubsub.aclose()


def stream(client: redis.Redis, plan: Plan[Any]) -> Iterator[Any]:
    """Run ``plan`` on a sync client, yielding the values it emits."""
    with _Session(client, plan) as session:
        for step in session:
            if isinstance(step, Emit):
                yield step.value
            else:
                session.reply = session.issue(step)


async def stream_async(client: redis.asyncio.Redis, plan: Plan[Any]) -> AsyncGenerator[Any, None]:
    """:func:`stream` on an asyncio client."""
    async with _Session(client, plan) as session:
        for step in session:
            if isinstance(step, Emit):
                yield step.value
            else:
                session.reply = await session.issue(step)


def run(client: redis.Redis, plan: Plan[T]) -> T:
    """Run ``plan`` on a sync client; return what it returns."""
    result: list[T] = []
    for _ in stream(client, _returning(plan, result)):
        pass
    return result[0]


async def run_async(client: redis.asyncio.Redis, plan: Plan[T]) -> T:
    """Run ``plan`` on an asyncio client; return what it returns."""
    result: list[T] = []
    async for _ in stream_async(client, _returning(plan, result)):
        pass
    return result[0]


def _returning(plan: Plan[T], result: list[T]) -> Plan[None]:
    result.append((yield from plan))


_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, redis.asyncio.Redis]] = (
    weakref.WeakKeyDictionary()
)


def async_client(url: str) -> redis.asyncio.Redis:
    """An asyncio Redis client for ``url`` (``decode_responses=True``), one per running event loop."""
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(url)
    if client is None:
        client = clients[url] = asyncio_client(url, decode_responses=True)
    return client
