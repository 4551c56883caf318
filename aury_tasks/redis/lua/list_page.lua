-- A page of records, newest first, once the backlog is indexed (LIST_PAGE): up to ARGV[9] ids
-- of the backlog are indexed here; with more waiting, the caller catches up and asks again. One
-- round trip for a listing.
-- KEYS none
-- ARGV[1] ledger prefix (KeySpace.ledger_prefix)
-- ARGV[2] record ttl in ms
-- ARGV[3] now in ms
-- ARGV[4] index key
-- ARGV[5] low score
-- ARGV[6] high score
-- ARGV[7] offset
-- ARGV[8] count
-- ARGV[9] backlog ids to index
-- Returns {ids still waiting} when the backlog is not done, else {0, total, id, {field, value,
-- …}, id, …}.
--- @include "include/index_backlog.lua"
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
