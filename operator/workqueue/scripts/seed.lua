-- seed: ARGV now, items... Adds the items never seeded before to the tail of pending.
-- Returns the number added.
check_types(2, 3)
local new = {}
for i = 2, #ARGV do
  if redis.call('SADD', K_SEEN, ARGV[i]) == 1 then new[#new + 1] = ARGV[i] end
end
if #new > 0 then redis.call('RPUSH', K_PENDING, unpack(new)) end
return notify_if(#new > 0, #new)
