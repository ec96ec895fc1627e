-- configure: ARGV now, mode ('set' | 'default'), field, value, ... Writes the config hash
-- ('default' only when it does not exist yet). Returns the stored hash as a flat list.
-- Both hashes the hot path reads or writes on every call also get the field 'layout' (a text
-- longer than hash-max-listpack-value, 64 bytes): Redis then keeps them in its hashtable
-- encoding, where a field is found in O(1), instead of a listpack scanned field by field.
check_types(1, 13)
local LAYOUT = 'queue hash read on every worker call: kept in hashtable encoding by this field'
if ARGV[2] == 'set' or redis.call('EXISTS', K_CONFIG) == 0 then
  local fields = {}
  for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('DEL', K_CONFIG)
  redis.call('HSET', K_CONFIG, 'layout', LAYOUT, unpack(fields))
end
redis.call('HSETNX', K_DURATIONS, 'layout', LAYOUT)
return redis.call('HGETALL', K_CONFIG)
