-- fail: ARGV now, item, token, error, delay. Returns {'retry', due} | {'dead', attempts}
-- | {'stale', reason}. A retried call with the same token returns {'acked', ''}.
check_types(1, 4, 5, 6, 7, 9, 10, 11, 12)
local now = clock(ARGV[1])
local item, token, err, delay = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local holder = redis.call('HGET', K_HOLDERS, item)
if holder ~= token then
  if redis.call('HGET', K_ACKED, item) == token then return {'acked', ''} end
  return {'stale', stale_reason(item, holder)}
end
local _, max_attempts = config()
local attempts = tonumber(redis.call('HGET', K_ATTEMPTS, item) or '0')
redis.call('ZREM', K_LEASED, item)
redis.call('HDEL', K_HOLDERS, item)
redis.call('HSET', K_ACKED, item, token)
redis.call('HSET', K_ERRORS, item, err)
if attempts >= max_attempts then
  redis.call('ZADD', K_DEAD, now, item)
  return {'dead', attempts}
end
redis.call('ZADD', K_DELAYED, now + delay, item)
redis.call('HINCRBY', K_COUNTERS, 'retries', 1)
return {'retry', fmt(now + delay)}
