-- reap: ARGV now, limit. Moves due retries to pending and re-queues (or dead-letters) expired
-- leases. Returns the number of expired leases handled.
check_types(1, 3, 4, 5, 6, 8, 9, 11)
local _, max_attempts = config()
local expired = fire_timers(clock(ARGV[1]), tonumber(ARGV[2]), max_attempts)
return expired
