-- stats: {pending, delayed, leased, succeeded, dead, total, retries} in one call. total counts
-- the `seen` set and the index range (see range_bounds).
check_types(2, 3, 4, 5, 7, 8, 11)
local leased = redis.call('HLEN', K_HOLDERS)
local total = redis.call('SCARD', K_SEEN)
local r_first, r_next = range_bounds()
if r_first then total = total + (r_next - r_first) end
return {redis.call('LLEN', K_PENDING), redis.call('ZCARD', K_TIMERS) - leased, leased,
        redis.call('HLEN', K_SUCCEEDED), redis.call('ZCARD', K_DEAD), total,
        tonumber(redis.call('HGET', K_COUNTERS, 'retries') or '0')}
