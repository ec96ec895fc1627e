-- dead_letters: ARGV now, limit, offset. Returns {total, item, error, attempts, ...} for up to
-- `limit` dead letters from position `offset`, oldest first.
check_types(6, 8, 9)
local offset = tonumber(ARGV[3] or '0')
local items = redis.call('ZRANGE', K_DEAD, offset, offset + tonumber(ARGV[2]) - 1)
local reply = {redis.call('ZCARD', K_DEAD)}
for _, item in ipairs(items) do
  reply[#reply + 1] = item
  reply[#reply + 1] = redis.call('HGET', K_ERRORS, item) or ''
  reply[#reply + 1] = tonumber(redis.call('HGET', K_ATTEMPTS, item) or '0')
end
return reply
