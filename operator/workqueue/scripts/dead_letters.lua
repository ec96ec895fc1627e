-- dead_letters: ARGV now, limit. Returns {item, error, attempts, ...} oldest first.
check_types(6, 8, 9)
local items = redis.call('ZRANGE', K_DEAD, 0, tonumber(ARGV[2]) - 1)
local reply = {}
for _, item in ipairs(items) do
  reply[#reply + 1] = item
  reply[#reply + 1] = redis.call('HGET', K_ERRORS, item) or ''
  reply[#reply + 1] = tonumber(redis.call('HGET', K_ATTEMPTS, item) or '0')
end
return reply
