"""The ledger's Lua scripts and how they are run: one atomic step per write.

A :class:`Write` is a script call that has not been sent yet. The worker's writes are handed to
the broker so that they travel in the same round trip as the enqueue or ack they belong to
(see :mod:`aury_tasks.broker.redis.riders`); everything else runs them on a client or pipeline directly.
Scripts are called by SHA (``EVALSHA``) and loaded on a ``NOSCRIPT`` reply, so a pipeline never
pays for a ``SCRIPT EXISTS`` round trip.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import NoScriptError

from ..core import keys


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


def run_pipelined(client: redis.Redis, writes: Sequence[Write], extra: Write | None = None) -> Any:
    """Send ``writes`` (and ``extra``, last) in one round trip; return ``extra``'s reply.

    See :func:`run_calls`.
    """
    calls = [*writes, extra] if extra is not None else list(writes)
    replies = run_calls(client, calls)
    for call, reply in zip(calls, replies, strict=True):
        if call.on_reply is not None:
            call.on_reply(reply)
    return replies[-1] if extra is not None else None


def run_calls(
    client: redis.Redis, calls: Sequence[Write], *, chunk_size: int = 0, raise_errors: bool = True
) -> list[Any]:
    """Send ``calls`` in one round trip, in order; return their replies.

    The calls are packed and written on one pooled connection and their replies read back, with
    none of the bookkeeping of redis-py's ``Pipeline`` (this is on every task's hot path). A call
    answered ``NOSCRIPT`` did not run: it is sent again with its source. Any other error reply is
    raised once every reply has been read (with ``raise_errors=False``, left in its place among
    the replies). A pooled connection found closed while sending (the server restarted) is
    replaced once; nothing had reached the server then.

    With ``chunk_size``, the calls are packed and written that many at a time (see :func:`run_chunks`).
    """
    size = chunk_size or len(calls) or 1
    chunks = (calls[start : start + size] for start in range(0, len(calls), size))
    return run_chunks(client, chunks, raise_errors=raise_errors)


def run_chunks(
    client: redis.Redis, chunks: Iterable[Sequence[Write]], *, raise_errors: bool = True
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

    def read_replies(count: int) -> None:
        for _ in range(count):
            try:
                replies.append(connection.read_response())
            except redis.ResponseError as error:
                replies.append(error)

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
            read_replies(unread)
            unread = len(chunk)
        read_replies(unread)
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
    for index, (call, reply) in enumerate(zip(calls, replies, strict=True)):
        if isinstance(reply, NoScriptError):
            try:
                replies[index] = reply = call.script(client, call.keys, call.args)
            except redis.ResponseError as error:
                replies[index] = reply = error
        if raise_errors and isinstance(reply, Exception):
            raise reply
    return replies


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
#: the first query after a burst indexes at most this many (about a second).
INDEX_BACKLOG_LIMIT = 50_000
#: Ids a send indexes when the backlog is over the limit (more than it adds: the backlog shrinks).
_SEND_INDEX_BATCH = 32

# Index entries of records written by a send (see send_record_lua), a batch at a time:
# pop up to `count` ids from the backlog list; for each record still there, add the id to every
# index it belongs in *now* (its current status, which may have moved on since the send), with
# one variadic ZADD per index key; give the records their lifetime. Returns the ids popped.
_INDEX_BACKLOG = """
local function index_backlog(prefix, count, ttl, now)
    local ids = redis.call('LPOP', prefix .. 'unindexed', count)
    if not ids then return 0 end
    local idx = prefix .. 'idx:'
    local members, order, queues, tasks, seen = {}, {}, {}, {}, {}
    local function add(key, score, id)
        local list = members[key]
        if not list then
            list = {}
            members[key] = list
            order[#order + 1] = key
        end
        list[#list + 1] = score
        list[#list + 1] = id
    end
    for _, id in ipairs(ids) do
        local rec = prefix .. 'task:' .. id
        local r = redis.call('HMGET', rec, 'status', 'queue_name', 'task_name', 'enqueued_at')
        if r[1] then
            local status, queue, task = r[1], r[2], r[3]
            local score = now
            if r[4] then score = math.floor(tonumber(r[4]) * 1000) end
            add(idx .. 'all', score, id)
            add(idx .. 'queue:' .. queue, score, id)
            add(idx .. 'task:' .. task, score, id)
            add(idx .. 'task:' .. task .. ':queue:' .. queue, score, id)
            add(idx .. 'status:' .. status, score, id)
            add(idx .. 'status:' .. status .. ':queue:' .. queue, score, id)
            add(idx .. 'status:' .. status .. ':task:' .. task, score, id)
            if not seen['q' .. queue] then
                seen['q' .. queue] = true
                queues[#queues + 1] = queue
            end
            if not seen['t' .. task] then
                seen['t' .. task] = true
                tasks[#tasks + 1] = task
            end
            if redis.call('PTTL', rec) == -1 then redis.call('PEXPIRE', rec, ttl) end
        end
    end
    for _, key in ipairs(order) do redis.call('ZADD', key, unpack(members[key])) end
    if #queues > 0 then
        redis.call('SADD', prefix .. 'queues', unpack(queues))
        redis.call('SADD', prefix .. 'tasks', unpack(tasks))
    end
    return #ids
end
"""

# A status write. Moves the record forward or does nothing, in one atomic step:
# compare (attempt, phase) with the record's, write the fields, move the record between the
# status indexes, count a task that ended in the minute and hour statistics buckets (all tasks,
# its queue, its task name) and announce the change on the task's event channel.
# KEYS[1] record
# ARGV[1] id  [2] status  [3] attempt (0: keep the record's)  [4] phase  [5] final 0/1  [6] ttl ms  [7] now ms
#     [8] ledger prefix  [9] queue  [10] task name  [11] duration ms or ''  [12] duration bucket
#     [13] error JSON to append to 'errors' or ''  [14] 'cancel' to announce a cancel, or ''
#     [15] minute bucket ttl s  [16…] field, value, …
# (A send's write of a new record is send_record_lua's, not this: it leaves the index entries to
# INDEX_BACKLOG.)
_TRANSITION_BODY = """
local rec, id, status, prefix = KEYS[1], ARGV[1], ARGV[2], ARGV[8]
local phase, final, now = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[7])
local cur = redis.call('HMGET', rec, 'status', 'attempt', 'phase', 'final', 'enqueued_at',
                       'queue_name', 'task_name', 'errors')
if cur[4] == '1' then return 0 end
local attempt = tonumber(ARGV[3])
if attempt == 0 then attempt = tonumber(cur[2] or '1') end
if cur[1] and final ~= '1' then
    local current_attempt, current_phase = tonumber(cur[2]), tonumber(cur[3])
    if attempt < current_attempt or (attempt == current_attempt and phase <= current_phase) then
        return 0
    end
end
local queue, task = cur[6] or ARGV[9], cur[7] or ARGV[10]
local idx = prefix .. 'idx:'
local score = now
if cur[5] then score = math.floor(tonumber(cur[5]) * 1000) end
if cur[1] then
    redis.call('ZREM', idx .. 'status:' .. cur[1], id)
    redis.call('ZREM', idx .. 'status:' .. cur[1] .. ':queue:' .. queue, id)
    redis.call('ZREM', idx .. 'status:' .. cur[1] .. ':task:' .. task, id)
else
    redis.call('ZADD', idx .. 'all', score, id)
    redis.call('ZADD', idx .. 'queue:' .. queue, score, id)
    redis.call('ZADD', idx .. 'task:' .. task, score, id)
    redis.call('ZADD', idx .. 'task:' .. task .. ':queue:' .. queue, score, id)
    redis.call('SADD', prefix .. 'queues', queue)
    redis.call('SADD', prefix .. 'tasks', task)
end
local fields = {'status', status, 'attempt', attempt, 'phase', ARGV[4], 'final', final,
                'queue_name', queue, 'task_name', task}
for i = 16, #ARGV do fields[#fields + 1] = ARGV[i] end
if ARGV[13] ~= '' then
    local errors = cur[8]
    if errors then errors = string.sub(errors, 1, -2) .. ',' .. ARGV[13] .. ']'
    else errors = '[' .. ARGV[13] .. ']' end
    fields[#fields + 1] = 'errors'
    fields[#fields + 1] = errors
end
redis.call('HSET', rec, unpack(fields))
redis.call('PEXPIRE', rec, ARGV[6])
redis.call('ZADD', idx .. 'status:' .. status, score, id)
redis.call('ZADD', idx .. 'status:' .. status .. ':queue:' .. queue, score, id)
redis.call('ZADD', idx .. 'status:' .. status .. ':task:' .. task, score, id)
if final == '1' then
    local buckets = {
        {'m:' .. math.floor(now / 60000), tonumber(ARGV[15])},
        {'h:' .. math.floor(now / 3600000), math.floor(tonumber(ARGV[6]) / 1000) + 3600},
    }
    for _, dimension in ipairs({'', ':q:' .. queue, ':t:' .. task}) do
        for _, bucket in ipairs(buckets) do
            local key = prefix .. 'stats:' .. bucket[1] .. dimension
            -- The bucket's lifetime is set when one of its status counters is new, which its
            -- own creation always is (not on every count: six commands less per task).
            if redis.call('HINCRBY', key, status, 1) == 1 then
                redis.call('EXPIRE', key, bucket[2])
            end
            if ARGV[11] ~= '' then
                redis.call('HINCRBY', key, 'dsum', ARGV[11])
                redis.call('HINCRBY', key, 'd' .. ARGV[12], 1)
            end
        end
    end
end
if ARGV[14] == 'cancel' then
    redis.call('ZADD', prefix .. 'cancelled', now, id)
    redis.call('PUBLISH', prefix .. 'cancel', id)
end
redis.call('PUBLISH', prefix .. 'events:' .. id, 's:' .. status)
return 1
"""
TRANSITION = LuaScript(_TRANSITION_BODY)


def send_record_lua(first: int | str, record: str, message: str = "", last: str = "#ARGV") -> str:
    """Lua for a send's write of its task's record, from the write's short form in ``ARGV``.

    A send's write (:data:`SEND_RECORD`) takes ``ARGV[first]`` id, ``[first + 1]`` status,
    ``[+2]`` phase, ``[+3]`` queue, ``[+4]`` task name, ``[+5]`` ttl ms, ``[+6]`` now ms, then
    field, value, … to the end; the rest of TRANSITION's arguments are the same for every send
    (attempt 1, not final, indexed later) and are not sent. A new record (the common case) is
    written here with one ``HSET``, its id queued for its index entries (``INDEX_BACKLOG``: the
    send's round trip stays short; whoever reads an index, a worker that ran tasks, or a send
    finding the backlog over its limit adds them in batches, and the record gets its lifetime
    then, or with its next status write); an existing one goes through TRANSITION.
    ``recorded`` is then TRANSITION's reply (1: written, 0: refused). ``first``: the index, or a
    Lua expression of it (a loop's); ``record``: the Lua expression of the record's key;
    ``message``: of the encoded message when it is not among the fields; ``last``: of the index
    of the write's last argument (the fields end there).
    The script must define ``index_backlog`` (:data:`_INDEX_BACKLOG`) and ``ledger``
    (TRANSITION's body as a function of KEYS and ARGV) before it.
    """
    if isinstance(first, int):
        at, fields_from = [f"ARGV[{first + offset}]" for offset in range(7)], str(first + 7)
    else:
        at = [f"ARGV[{first} + {offset}]" if offset else f"ARGV[{first}]" for offset in range(7)]
        fields_from = f"{first} + 7"
    prefix = keys.LEDGER_PREFIX
    message_field = f"'message', {message}, " if message else ""
    message_arg = f"args[#args + 1] = 'message'\nargs[#args + 1] = {message}\n" if message else ""
    return f"""local recorded = 1
if redis.call('EXISTS', {record}) == 0 then
    redis.call('HSET', {record}, 'status', {at[1]}, 'attempt', '1', 'phase', {at[2]}, 'final', '0',
               'queue_name', {at[3]}, 'task_name', {at[4]}, {message_field}
               unpack(ARGV, {fields_from}, {last}))
    if redis.call('RPUSH', '{prefix}unindexed', {at[0]}) > {INDEX_BACKLOG_LIMIT} then
        index_backlog('{prefix}', {_SEND_INDEX_BATCH}, {at[5]}, tonumber({at[6]}))
    end
    redis.call('PUBLISH', '{prefix}events:' .. {at[0]}, 's:' .. {at[1]})
else
    local args = {{{at[0]}, {at[1]}, '1', {at[2]}, '0', {at[5]}, {at[6]}, '{prefix}', {at[3]}, {at[4]},
                  '', '', '', '', '{keys.MINUTE_BUCKET_TTL}'}}
    for i = {fields_from}, {last} do args[#args + 1] = ARGV[i] end
    {message_arg}recorded = ledger({{{record}}}, args)
end
"""


def ledger_function() -> str:
    """Lua defining ``index_backlog`` and ``ledger(KEYS, ARGV)`` (TRANSITION) for a composite script."""
    return f"{_INDEX_BACKLOG}\nlocal function ledger(KEYS, ARGV)\n{_TRANSITION_BODY}\nend\n"


# A send's write of its task's record, in its short form (see send_record_lua).
# KEYS[1] record  ARGV: as send_record_lua(1, …) says. Returns 1 (written) or 0 (refused).
SEND_RECORD = LuaScript(ledger_function() + send_record_lua(1, "KEYS[1]") + "return recorded\n")

# Index entries for up to ARGV[2] ids of the backlog (see _INDEX_BACKLOG).
# ARGV[1] ledger prefix  [2] how many  [3] record ttl ms  [4] now ms
# Returns {ids popped, ids still waiting}.
INDEX_BACKLOG = LuaScript(
    _INDEX_BACKLOG
    + """
local popped = index_backlog(ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]))
return {popped, redis.call('LLEN', ARGV[1] .. 'unindexed')}
"""
)

# A page of records, newest first, once the backlog is indexed (up to ARGV[9] ids of it here;
# more waiting: the caller catches up and asks again). One round trip for a listing.
# ARGV[1] ledger prefix  [2] record ttl ms  [3] now ms  [4] index key  [5] low score  [6] high
# score  [7] offset  [8] count  [9] backlog ids to index
# Returns {ids still waiting} when the backlog is not done, else {0, total, id, {field, value,
# …}, id, …}.
LIST_PAGE = LuaScript(
    _INDEX_BACKLOG
    + """
local prefix = ARGV[1]
index_backlog(prefix, tonumber(ARGV[9]), ARGV[2], tonumber(ARGV[3]))
local waiting = redis.call('LLEN', prefix .. 'unindexed')
if waiting > 0 then return {waiting} end
local page = {0, redis.call('ZCOUNT', ARGV[4], ARGV[5], ARGV[6])}
local ids = redis.call('ZREVRANGEBYSCORE', ARGV[4], ARGV[6], ARGV[5], 'LIMIT', ARGV[7], ARGV[8])
for _, id in ipairs(ids) do
    page[#page + 1] = id
    page[#page + 1] = redis.call('HGETALL', prefix .. 'task:' .. id)
end
return page
"""
)

# A progress update: stored on the record and published, unless the task has ended.
# KEYS[1] record  ARGV[1] id  [2] ledger prefix  [3] progress JSON
PROGRESS = LuaScript("""
local current = redis.call('HMGET', KEYS[1], 'status', 'final')
if not current[1] or current[2] == '1' then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[3])
redis.call('PUBLISH', ARGV[2] .. 'events:' .. ARGV[1], 'p:' .. ARGV[3])
return 1
""")

# Drop index entries whose record has expired. Walks ids scored up to a cutoff, oldest first.
# KEYS[1] index  ARGV[1] record key prefix  [2] cutoff score  [3] offset  [4] batch size
# Returns {ids looked at, ids removed}.
TRIM_INDEX = LuaScript("""
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', ARGV[3], ARGV[4])
local removed = 0
for _, id in ipairs(ids) do
    if redis.call('EXISTS', ARGV[1] .. id) == 0 then
        redis.call('ZREM', KEYS[1], id)
        removed = removed + 1
    end
end
return {#ids, removed}
""")

# Delete the records (and their index entries) of tasks that ended before a cutoff.
# ARGV[1] ledger prefix  [2] enqueue-time cutoff (ms)  [3] finish-time cutoff (s)  [4] offset
#     [5] batch size
# Returns {ids looked at, records deleted}.
CLEANUP = LuaScript("""
local prefix = ARGV[1]
local idx = prefix .. 'idx:'
local ids = redis.call('ZRANGEBYSCORE', idx .. 'all', '-inf', ARGV[2], 'LIMIT', ARGV[4], ARGV[5])
local deleted = 0
for _, id in ipairs(ids) do
    local rec = prefix .. 'task:' .. id
    local r = redis.call('HMGET', rec, 'final', 'finished_at', 'status', 'queue_name', 'task_name')
    if not r[3] then
        redis.call('ZREM', idx .. 'all', id)
        deleted = deleted + 1
    elseif r[1] == '1' and tonumber(r[2] or '0') < tonumber(ARGV[3]) then
        local s = idx .. 'status:' .. r[3]
        redis.call('ZREM', idx .. 'all', id)
        redis.call('ZREM', idx .. 'queue:' .. r[4], id)
        redis.call('ZREM', idx .. 'task:' .. r[5], id)
        redis.call('ZREM', idx .. 'task:' .. r[5] .. ':queue:' .. r[4], id)
        redis.call('ZREM', s, id)
        redis.call('ZREM', s .. ':queue:' .. r[4], id)
        redis.call('ZREM', s .. ':task:' .. r[5], id)
        redis.call('DEL', rec)
        deleted = deleted + 1
    end
end
return {#ids, deleted}
""")
