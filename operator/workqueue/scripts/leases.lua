-- leases: ARGV now, cursor, count. One HSCAN page of the leased items:
-- {next_cursor, now_us, item, token, attempt, expiry_us, ...} ('0' = iteration finished).
check_types(4, 5, 6)
local page = redis.call('HSCAN', K_HOLDERS, ARGV[2], 'COUNT', tonumber(ARGV[3]))
local reply = {page[1], us(clock(ARGV[1]))}
local rows = page[2]
for i = 1, #rows, 2 do
  reply[#reply + 1] = rows[i]
  reply[#reply + 1] = rows[i + 1]
  reply[#reply + 1] = tonumber(redis.call('HGET', K_ATTEMPTS, rows[i]) or '0')
  reply[#reply + 1] = us(tonumber(redis.call('ZSCORE', K_TIMERS, rows[i]) or '0'))
end
return reply
