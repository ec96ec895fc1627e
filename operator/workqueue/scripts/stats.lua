-- stats: {pending, delayed, leased, succeeded, dead, total, retries, completed} in one call.
check_types(2, 3, 4, 5, 8, 9, 12)
local c = redis.call('HMGET', K_COUNTERS, 'retries', 'completed')
return {redis.call('LLEN', K_PENDING), redis.call('ZCARD', K_DELAYED), redis.call('ZCARD', K_LEASED),
        redis.call('SCARD', K_SUCCEEDED), redis.call('ZCARD', K_DEAD), redis.call('SCARD', K_SEEN),
        tonumber(c[1] or '0'), tonumber(c[2] or '0')}
