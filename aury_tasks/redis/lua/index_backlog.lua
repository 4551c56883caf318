-- Index entries for up to ARGV[2] ids of the send backlog (INDEX_BACKLOG; see
-- include/index_backlog.lua): what a catch-up runs, a batch at a time.
-- KEYS none
-- ARGV[1] ledger prefix (KeySpace.ledger_prefix)
-- ARGV[2] how many ids to index at most
-- ARGV[3] record ttl in ms
-- ARGV[4] now in ms
-- Returns {ids popped, ids still waiting}.
--- @include "include/index_backlog.lua"
local popped = index_backlog(ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]))
return {popped, redis.call('LLEN', ARGV[1] .. 'unindexed')}
