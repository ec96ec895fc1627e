-- reap: ARGV now, limit. Promotes due retries and re-queues expired leases. Returns the
-- number of expired leases handled.
check_types(1, 3, 4, 5, 6, 7, 9, 10, 12)
local now = clock(ARGV[1])
local _, max_attempts = config()
promote(now, tonumber(ARGV[2]))
return reap(now, tonumber(ARGV[2]), max_attempts)
