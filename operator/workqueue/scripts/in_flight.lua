-- in_flight: ARGV now, limit. Returns {item, token, attempt, expiry, ...} soonest expiry first.
check_types(5, 6, 7)
local rows = redis.call('ZRANGE', K_LEASED, 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
local reply = {}
for i = 1, #rows, 2 do
  local item = rows[i]
  reply[#reply + 1] = item
  reply[#reply + 1] = redis.call('HGET', K_HOLDERS, item) or ''
  reply[#reply + 1] = tonumber(redis.call('HGET', K_ATTEMPTS, item) or '0')
  reply[#reply + 1] = rows[i + 1]
end
return reply
