-- bucket: KEYS[1] = the bucket hash; ARGV now, qps, burst, n.
-- Returns {granted, wait_us} (see bucket_take in lib.lua).
local granted, wait = bucket_take(KEYS[1], clock(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                                  tonumber(ARGV[4]))
return {granted, us(wait)}
