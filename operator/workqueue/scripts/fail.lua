-- fail: ARGV now, item, token, error, delay. Returns {'retry', due_us} | {'dead', attempts}
-- | {'stale', reason}. A repeated call with the same token returns {'acked', ''}.
check_types(1, 4, 5, 6, 8, 9, 10, 11)
local now = clock(ARGV[1])
local item, token, err, delay = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local holder = redis.call('HGET', K_HOLDERS, item)
if holder ~= token then
  if redis.call('HGET', K_ACKED, item) == token then return {'acked', ''} end
  return {'stale', stale_reason(item, holder)}
end
local _, max_attempts, _, _, due = config()
local attempts = tonumber(redis.call('HGET', K_ATTEMPTS, item) or '0')
redis.call('HSET', K_ACKED, item, token)
redis.call('HSET', K_ERRORS, item, err)
redis.call('HDEL', K_HOLDERS, item)
if attempts >= max_attempts then
  redis.call('ZADD', K_DEAD, now, item)
  redis.call('ZREM', K_TIMERS, item)
  return notify_if(true, {'dead', attempts})
end
redis.call('ZADD', K_TIMERS, now + delay, item)
timer_set(now + delay, due)
redis.call('HINCRBY', K_COUNTERS, 'retries', 1)
return notify_if(true, {'retry', us(now + delay)})
