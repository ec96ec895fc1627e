-- in_flight: ARGV now, limit. Returns {item, token, attempt, expiry_us, ...} for up to `limit`
-- leased items, soonest expiry first.
check_types(4, 5, 6)
local reply = {}
local offset = 0
while #reply < 4 * tonumber(ARGV[2]) do
  local rows = redis.call('ZRANGE', K_TIMERS, offset, offset + 999, 'WITHSCORES')
  if #rows == 0 then break end
  offset = offset + 1000
  for i = 1, #rows, 2 do
    local holder = redis.call('HGET', K_HOLDERS, rows[i])
    if holder and #reply < 4 * tonumber(ARGV[2]) then
      reply[#reply + 1] = rows[i]
      reply[#reply + 1] = holder
      reply[#reply + 1] = tonumber(redis.call('HGET', K_ATTEMPTS, rows[i]) or '0')
      reply[#reply + 1] = us(tonumber(rows[i + 1]))
    end
  end
end
return reply
