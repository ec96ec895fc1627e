-- stats: {pending, delayed, leased, succeeded, dead, total, retries} in one call.
check_types(2, 3, 4, 5, 7, 8, 11)
local leased = redis.call('HLEN', K_HOLDERS)
return {redis.call('LLEN', K_PENDING), redis.call('ZCARD', K_TIMERS) - leased, leased,
        redis.call('HLEN', K_SUCCEEDED), redis.call('ZCARD', K_DEAD), redis.call('SCARD', K_SEEN),
        tonumber(redis.call('HGET', K_COUNTERS, 'retries') or '0')}
