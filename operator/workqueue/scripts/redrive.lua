-- redrive: ARGV now, mode ('items' | 'all'), limit, items...
-- Moves dead-lettered items back to the tail of pending with their attempts, last error and
-- acknowledgement reset: the listed ones ('items', each distinct item once) or up to `limit` of
-- the oldest ('all'). Items that are not dead letters are left where they are.
-- Returns {redriven, dead_left, item, reason, ...} with one (item, reason) per listed item that
-- was not redriven.
check_types(2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
local function state(item)
  if redis.call('HEXISTS', K_HOLDERS, item) == 1 then return 'leased' end
  if redis.call('HEXISTS', K_SUCCEEDED, item) == 1 then return 'succeeded' end
  if redis.call('ZSCORE', K_TIMERS, item) then return 'waiting for a retry' end
  if not is_known(item) then return 'not an item of this queue' end
  return 'pending'
end
local candidates, skipped = {}, {}
if ARGV[2] == 'all' then
  candidates = redis.call('ZRANGE', K_DEAD, 0, tonumber(ARGV[3]) - 1)
else
  local seen = {}
  for i = 4, #ARGV do
    local item = ARGV[i]
    if not seen[item] then
      seen[item] = true
      if redis.call('ZSCORE', K_DEAD, item) then
        candidates[#candidates + 1] = item
      else
        skipped[#skipped + 1] = item
        skipped[#skipped + 1] = state(item)
      end
    end
  end
end
if #candidates > 0 then
  redis.call('RPUSH', K_PENDING, unpack(candidates))
  redis.call('ZREM', K_DEAD, unpack(candidates))
  redis.call('HDEL', K_ATTEMPTS, unpack(candidates))
  redis.call('HDEL', K_ERRORS, unpack(candidates))
  redis.call('HDEL', K_ACKED, unpack(candidates))
  redis.call('HINCRBY', K_COUNTERS, 'redriven', #candidates)
end
local reply = {#candidates, redis.call('ZCARD', K_DEAD)}
for _, v in ipairs(skipped) do reply[#reply + 1] = v end
return notify_if(#candidates > 0, reply)
