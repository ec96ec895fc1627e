-- complete_and_lease: ARGV now, worker, n, lease_seconds, nonce, then item, token pairs to
-- complete. Returns {stale, lease_reply} (see complete_pairs and lease_items).
local now = clock(ARGV[1])
local stale = complete_pairs(6, now)
return notify_if(true, {stale, lease_items(now, ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5])})
