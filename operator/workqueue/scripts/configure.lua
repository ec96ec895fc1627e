-- configure: ARGV now, mode ('set' | 'default'), field, value, ... Writes the config hash
-- ('default' only when it does not exist yet). Returns the stored hash as a flat list.
check_types(1)
if ARGV[2] == 'set' or redis.call('EXISTS', K_CONFIG) == 0 then
  local fields = {}
  for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('DEL', K_CONFIG)
  redis.call('HSET', K_CONFIG, unpack(fields))
end
return redis.call('HGETALL', K_CONFIG)
