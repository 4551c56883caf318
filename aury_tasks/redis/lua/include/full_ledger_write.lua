-- full_ledger_write(rec, first, message): a ledger write in TRANSITION's full form riding in a
-- broker script (tracked_enqueue.lua, tracked_ack.lua), on the arguments after the broker's own:
--   ARGV[first]        where the message goes among the ledger's arguments (0: nowhere), so
--                      that it crosses the network once
--   ARGV[first + 1 …]  TRANSITION's arguments (include/ledger.lua lists them), the message's
--                      place left ''
-- rec      the task's record hash
-- message  the encoded message to put in its place, or nil (an ack has none)
-- Returns ledger's reply (1: written, 0: refused).
--- @include "include/ledger.lua"
local function full_ledger_write(rec, first, message)
    local args = {}
    for i = first + 1, #ARGV do
        args[#args + 1] = ARGV[i]
    end
    local at = tonumber(ARGV[first])
    if message and at > 0 then
        args[at] = message
    end
    return ledger({rec}, args)
end
