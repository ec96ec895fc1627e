-- renew: ARGV now, item, token, lease_seconds('' = configured).
-- Returns {'ok', expiry_us} | {'stale', reason}.
check_types(1, 4, 5)
local now = clock(ARGV[1])
local item, token = ARGV[2], ARGV[3]
local holder = redis.call('HGET', K_HOLDERS, item)
if holder ~= token then return {'stale', stale_reason(item, holder)} end
local lease_seconds, _, _, _, due = config()
if ARGV[4] ~= '' then lease_seconds = tonumber(ARGV[4]) end
redis.call('ZADD', K_TIMERS, now + lease_seconds, item)
timer_set(now + lease_seconds, due)
return {'ok', us(now + lease_seconds)}
