-- release: ARGV now, item, token. Gives the item back to the head of pending without counting
-- the attempt. Returns {'ok', ''} | {'acked', ''} | {'stale', reason}.
check_types(3, 4, 5, 6, 10)
local item, token = ARGV[2], ARGV[3]
local holder = redis.call('HGET', K_HOLDERS, item)
if holder ~= token then
  if redis.call('HGET', K_ACKED, item) == token then return {'acked', ''} end
  return {'stale', stale_reason(item, holder)}
end
redis.call('LPUSH', K_PENDING, item)
redis.call('HSET', K_ACKED, item, token)
if tonumber(redis.call('HINCRBY', K_ATTEMPTS, item, -1)) <= 0 then
  redis.call('HDEL', K_ATTEMPTS, item)
end
redis.call('ZREM', K_TIMERS, item)
redis.call('HDEL', K_HOLDERS, item)
return notify_if(true, {'ok', ''})
