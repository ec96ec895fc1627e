-- complete_and_lease: ARGV now, worker, n, lease_seconds, nonce, durations block (see
-- add_durations), then item, token pairs to complete. Returns {stale, lease_reply} (see
-- complete_pairs and lease_items).
local now = clock(ARGV[1])
local stale = complete_pairs(durations_end(6), now, ARGV[6] ~= '')
local reply = {stale, lease_items(now, ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5])}
add_durations(6)
return notify_if(true, reply)
