-- seed_range: ARGV now, first, stop. Seeds the items of an index range: the decimal integers
-- first .. stop-1, in order, like seed (only items never seeded before go to the tail of
-- pending), generated here so no item crosses the network. In the same atomic step it raises
-- the range cursor (counters 'range_next') to stop: a seed resumed after a crash starts there,
-- and the items below it are known to be in the queue. Per 1000 items: one SMISMEMBER, one
-- SADD and one RPUSH (no per-item command). Returns {added, range_next}.
check_types(2, 3, 11)
local first, stop = tonumber(ARGV[2]), tonumber(ARGV[3])
local added = 0
local i = first
while i < stop do
  local batch = {}
  local last = math.min(stop - 1, i + 999)
  for j = i, last do batch[#batch + 1] = string.format('%d', j) end
  local known = redis.call('SMISMEMBER', K_SEEN, unpack(batch))
  local new = {}
  for k, item in ipairs(batch) do
    if known[k] == 0 then new[#new + 1] = item end
  end
  if #new > 0 then
    redis.call('SADD', K_SEEN, unpack(new))
    redis.call('RPUSH', K_PENDING, unpack(new))
    added = added + #new
  end
  i = last + 1
end
local cursor = tonumber(redis.call('HGET', K_COUNTERS, 'range_next') or '-1')
if stop > cursor then
  redis.call('HSET', K_COUNTERS, 'range_next', string.format('%d', stop))
  cursor = stop
end
return notify_if(added > 0, {added, cursor})
