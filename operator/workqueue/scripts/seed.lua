-- seed: ARGV now, items... Adds the items never seeded before to the tail of pending (an item
-- of the queue's index range counts as seeded; see range_bounds). Returns the number added.
check_types(2, 3, 11)
local r_first, r_next = range_bounds()
local new = {}
for i = 2, #ARGV do
  local item = ARGV[i]
  local index = r_first and as_index(item)
  local in_range = index and index >= r_first and index < r_next
  if not in_range and redis.call('SADD', K_SEEN, item) == 1 then new[#new + 1] = item end
end
if #new > 0 then redis.call('RPUSH', K_PENDING, unpack(new)) end
return notify_if(#new > 0, #new)
