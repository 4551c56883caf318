"""The Lua scripts, how they are loaded, and how they are run: one atomic step per write.

Every script is a file of its own in ``aury_tasks/redis/lua/`` (``transition.lua``, ``fetch.lua``
…), whose header lists its KEYS and ARGV and what it returns; code two scripts share is a file in
``lua/include/``, pulled in by a line ``--- @include "include/<name>.lua"``. :func:`load_script`
reads a script with its includes expanded, once. No Lua is written in Python.

A :class:`Write` is a script call that has not been sent yet. The worker's writes are handed to
the broker so that they travel in the same round trip as the enqueue or ack they belong to
(see :mod:`aury_tasks.broker.redis.riders`); everything else runs them on a client or pipeline directly.
Scripts are called by SHA (``EVALSHA``) and loaded on a ``NOSCRIPT`` reply, so a pipeline never
pays for a ``SCRIPT EXISTS`` round trip.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoScriptError

from ..core.errors import ReplicationTimeout


class LuaScript:
    """A Lua script known by its SHA1, run with ``EVALSHA`` and loaded when missing."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self.sha_bytes = self.sha.encode()

    def __call__(self, client: redis.Redis, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)

    async def call_async(self, client: redis.asyncio.Redis, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script on an asyncio client (an API request on the event loop)."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)  # type: ignore[misc]


class LuaLoadError(ValueError):
    """A script file that cannot be loaded: missing, or an include unknown or in a cycle."""


#: A line that pulls in a shared file, by its path under ``lua/``: ``--- @include "include/x.lua"``.
_INCLUDE_MARK = "--- @include"
_INCLUDE = re.compile(r'--- @include "(?P<path>[^"]+)"[ \t]*')
#: Where the script files are: package data of :mod:`aury_tasks.redis`.
_LUA_ROOT = resources.files("aury_tasks.redis").joinpath("lua")


def lua_source(name: str) -> str:
    """The Lua of ``aury_tasks/redis/lua/<name>.lua`` with its includes expanded.

    An include line is replaced by the included file (expanded in turn) the first time that file
    is named in the script; a later line naming it again adds nothing (what it defines is there
    already). Paths are under ``lua/``. ``name`` is the path without ``.lua`` (``"transition"``,
    ``"include/ledger"``). Raises :class:`LuaLoadError` for a missing file, an unknown include, a
    malformed include line or an include cycle.
    """
    path = f"{name}.lua"
    return _expanded((path,), {path})


@functools.cache
def load_script(name: str) -> LuaScript:
    """The script of ``aury_tasks/redis/lua/<name>.lua``, includes expanded (see :func:`lua_source`).

    Read from the package's data once per process.
    """
    return LuaScript(lua_source(name))


def _expanded(chain: tuple[str, ...], included: set[str]) -> str:
    # chain: the files being expanded, the script first, ending with the one read here.
    text = _read(chain[-1], chain[-2] if len(chain) > 1 else None)
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith(_INCLUDE_MARK):
            lines.append(line)
            continue
        directive = _INCLUDE.fullmatch(line.rstrip("\r\n"))
        if directive is None:
            raise LuaLoadError(f"malformed include line in {chain[-1]}: {line.strip()!r}")
        target = directive["path"]
        if target in chain:
            raise LuaLoadError("include cycle: " + " -> ".join((*chain, target)))
        if target not in included:
            included.add(target)
            body = _expanded((*chain, target), included)
            lines.append(body if body.endswith("\n") else body + "\n")
    return "".join(lines)


def _read(path: str, included_from: str | None) -> str:
    parts = path.split("/")
    resource = _LUA_ROOT.joinpath(*parts)
    if ".." in parts or not path.endswith(".lua") or not resource.is_file():
        where = f" (included from {included_from})" if included_from else ""
        raise LuaLoadError(f"no Lua file {path!r} under aury_tasks/redis/lua{where}")
    return resource.read_text(encoding="utf-8")


@dataclass(slots=True)
class Write:
    """One script call, ready to be sent alone or in someone else's pipeline."""

    script: LuaScript
    keys: list[Any]
    args: list[Any]
    #: Called with the call's reply when it was sent by :meth:`run` or :func:`run_pipelined`
    #: (a write riding on someone else's round trip that needs its answer).
    on_reply: Callable[[Any], None] | None = None

    def run(self, client: redis.Redis) -> Any:
        """Send this call on its own."""
        reply = self.script(client, self.keys, self.args)
        if self.on_reply is not None:
            self.on_reply(reply)
        return reply


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    """Writes to wait for: ``replicas`` replicas must have them within ``timeout_ms`` (Redis ``WAIT``)."""

    replicas: int
    timeout_ms: int


def run_pipelined(
    client: redis.Redis,
    writes: Sequence[Write],
    extra: Write | None = None,
    *,
    wait: ReplicaWait | None = None,
) -> Any:
    """Send ``writes`` (and ``extra``, last) in one round trip; return ``extra``'s reply.

    See :func:`run_calls`.
    """
    calls = [*writes, extra] if extra is not None else list(writes)
    replies = run_calls(client, calls, wait=wait)
    for call, reply in zip(calls, replies, strict=True):
        if call.on_reply is not None:
            call.on_reply(reply)
    return replies[-1] if extra is not None else None


def run_calls(
    client: redis.Redis,
    calls: Sequence[Write],
    *,
    chunk_size: int = 0,
    raise_errors: bool = True,
    wait: ReplicaWait | None = None,
) -> list[Any]:
    """Send ``calls`` in one round trip, in order; return their replies.

    The calls are packed and written on one pooled connection and their replies read back, with
    none of the bookkeeping of redis-py's ``Pipeline`` (this is on every task's hot path). A call
    answered ``NOSCRIPT`` did not run: it is sent again with its source, on the same connection.
    Any other error reply is raised once every reply has been read (with ``raise_errors=False``,
    left in its place among the replies). A pooled connection found closed while sending (the
    server restarted) is replaced once; nothing had reached the server then.

    With ``wait``, a ``WAIT`` follows the calls on the same connection (not in a transaction, where
    it would not block): :class:`~aury_tasks.core.errors.ReplicationTimeout` is raised when fewer
    replicas than asked had the writes in time (they are on the master, which may lose them).
    Without it, nothing is sent but the calls.

    With ``chunk_size``, the calls are packed and written that many at a time (see :func:`run_chunks`).
    """
    size = chunk_size or len(calls) or 1
    chunks = (calls[start : start + size] for start in range(0, len(calls), size))
    return run_chunks(client, chunks, raise_errors=raise_errors, wait=wait)


def run_chunks(
    client: redis.Redis,
    chunks: Iterable[Sequence[Write]],
    *,
    raise_errors: bool = True,
    wait: ReplicaWait | None = None,
) -> list[Any]:
    """Send the calls of ``chunks`` on one connection, a chunk at a time; return their replies.

    Each chunk is packed and written as soon as the iterable gives it, and the replies of the
    chunk before it are read then: the server runs one chunk while the caller reads the replies
    of the one before and builds the next, and the caller waits only for the last chunk's. As
    :func:`run_calls` otherwise (which sends its calls this way).
    """
    pool = client.connection_pool
    connection = pool.get_connection()
    calls: list[Write] = []
    replies: list[Any] = []
    copies = -1  # the replicas WAIT counted (-1: none asked)
    try:
        unread = 0  # calls of the previous chunk, whose replies are read once this one is written
        for number, chunk in enumerate(chunks):
            calls += chunk
            packed = [b"".join(_pack_call(call) for call in chunk)]
            if number:
                connection.send_packed_command(packed)
            else:
                try:
                    connection.send_packed_command(packed)
                except (redis.ConnectionError, redis.TimeoutError):
                    connection.disconnect()
                    connection.send_packed_command(packed)
            _read_replies(connection, unread, replies)
            unread = len(chunk)
        _read_replies(connection, unread, replies)
        _run_missing_scripts(connection, calls, replies)
        if wait is not None:
            connection.send_command("WAIT", wait.replicas, wait.timeout_ms)
            copies = int(connection.read_response())
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
    if raise_errors:
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
    if wait is not None and copies < wait.replicas:
        raise ReplicationTimeout(
            f"{copies} of {wait.replicas} replica(s) had the write within {wait.timeout_ms} ms"
            " (TASK_BROKER_MIN_REPLICAS); the master has it and may lose it"
        )
    return replies


def _read_replies(connection: Any, count: int, replies: list[Any]) -> None:
    for _ in range(count):
        try:
            replies.append(connection.read_response())
        except redis.ResponseError as error:
            replies.append(error)


def _run_missing_scripts(connection: Any, calls: list[Write], replies: list[Any]) -> None:
    """Send again with its source, on ``connection``, each call answered NOSCRIPT (it did not run)."""
    for index, (call, reply) in enumerate(zip(calls, replies, strict=True)):
        if isinstance(reply, NoScriptError):
            script = call.script
            connection.send_command("EVAL", script.source, len(call.keys), *call.keys, *call.args)
            try:
                replies[index] = connection.read_response()
            except redis.ResponseError as error:
                replies[index] = error


def _pack_call(call: Write) -> bytes:
    # The EVALSHA command in RESP. redis-py's general packer costs a third of a send's CPU; the
    # arguments here are only str, bytes, int and float (the common types tested inline: this
    # runs for every argument of every call).
    keys, args = call.keys, call.args
    parts = [b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n" % (len(keys) + len(args) + 3, call.script.sha_bytes)]
    count = b"%d" % len(keys)
    parts.append(b"$%d\r\n%s\r\n" % (len(count), count))
    for value in (*keys, *args):
        kind = type(value)
        data = value.encode() if kind is str else value if kind is bytes else _encode(value)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _encode(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return b"%d" % value
    if isinstance(value, float):
        return repr(value).encode()
    raise redis.DataError(f"cannot send a {type(value).__name__} to Redis: {value!r}")


#: Ids a send may leave waiting for their index entries before the send indexes some itself: what
#: one worker heartbeat catches up (``CATCH_UP_PER_BEAT``), so that sends at up to 10,000 a second
#: between two heartbeats (5 s) never pay for it while workers run; with no worker and no reader,
#: the first query after a burst indexes at most this many (about a second). The send scripts
#: hold it as a constant (``lua/include/send_record.lua``, which says why; a test checks they agree).
INDEX_BACKLOG_LIMIT = 50_000

#: A status write (``lua/transition.lua``): the record moved forward, or nothing done.
TRANSITION = load_script("transition")
#: A send's write of its task's record, in its short form (``lua/send_record.lua``).
SEND_RECORD = load_script("send_record")
#: Index entries for a batch of the send backlog (``lua/index_backlog.lua``).
INDEX_BACKLOG = load_script("index_backlog")
#: A page of records once the backlog is indexed, in one round trip (``lua/list_page.lua``).
LIST_PAGE = load_script("list_page")
#: A progress update, stored and published unless the task has ended (``lua/progress.lua``).
PROGRESS = load_script("progress")
#: Index entries of expired records dropped (``lua/trim_index.lua``).
TRIM_INDEX = load_script("trim_index")
#: The records of tasks that ended before a cutoff deleted (``lua/cleanup.lua``).
CLEANUP = load_script("cleanup")
