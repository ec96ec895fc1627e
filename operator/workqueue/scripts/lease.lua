-- lease: ARGV now, worker, n, lease_seconds('' = configured), nonce, durations block (see
-- add_durations). See lease_items.
local reply = lease_items(clock(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5])
local added = add_durations(6)
return notify_if(reply[4] ~= nil or added, reply)
