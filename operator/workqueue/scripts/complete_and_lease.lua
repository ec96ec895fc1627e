-- complete_and_lease: ARGV now, worker, n, lease_seconds, then item, token pairs to complete.
-- Returns {stale, lease_reply} (see complete_pairs and lease_items).
check_types(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)
local now = clock(ARGV[1])
local stale = complete_pairs(5)
return {stale, lease_items(now, ARGV[2], tonumber(ARGV[3]), ARGV[4])}
