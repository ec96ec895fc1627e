-- seed_range: ARGV now, first, stop. Seeds the items of an index range: the decimal integers
-- first .. stop-1, in order, like seed (only items never seeded before go to the tail of
-- pending), generated here so no item crosses the network.
--
-- Deduplication by cursor: the queue's range is the contiguous [range_first, range_next) of
-- the counters hash; its items are not stored in `seen` (a pending range item costs only its
-- list entry). A call that starts inside or at the end of the range skips the indices below
-- range_next and raises range_next to stop in the same atomic step, so a seed resumed after a
-- crash starts there and adds nothing twice. An index that was added earlier by seed/add (it
-- is in `seen`) is not pushed again, and leaves `seen` since the range now covers it (counted
-- once in the total). Indices outside a contiguous extension (before range_first, or after a
-- gap) fall back to `seen`, as seed does. Queues seeded before the cursor range existed (a
-- range_next without range_first) keep using `seen` for every index.
-- Per 1000 items: one RPUSH (plus one SMISMEMBER while `seen` is not empty); no per-item
-- command. Returns {added, range_next}.
check_types(2, 3, 11)
local first, stop = tonumber(ARGV[2]), tonumber(ARGV[3])
local r_first, r_next = range_bounds()
local has_next = redis.call('HEXISTS', K_COUNTERS, 'range_next') == 1
if not has_next and redis.call('HEXISTS', K_COUNTERS, 'range_first') == 1 then
  -- The cursor is the only record of the range's items: without it, seeding could add them twice.
  error({err = 'RANGELOST queue ' .. K_COUNTERS .. ' has range_first but no range_next: the range ' ..
               'cursor was deleted, so which indices are already in the queue is unknown'})
end
local legacy = has_next and r_first == nil
if not legacy and r_first == nil then
  r_first, r_next = first, first
  redis.call('HSET', K_COUNTERS, 'range_first', string.format('%d', first))
end
local extend = not legacy and first <= r_next and first >= r_first
local seen_empty = redis.call('SCARD', K_SEEN) == 0
local added = 0

-- Push items [lo, hi] (indices) not in `seen`; `adopt`: also remove those found from `seen`
-- (now covered by the range) instead of adding the new ones to it.
local function push(lo, hi, adopt)
  local i = lo
  while i <= hi do
    local last = math.min(hi, i + 999)
    local batch = {}
    for j = i, last do batch[#batch + 1] = string.format('%d', j) end
    local new = batch
    if not (adopt and seen_empty) then
      local known = redis.call('SMISMEMBER', K_SEEN, unpack(batch))
      new = {}
      local found = {}
      for k, item in ipairs(batch) do
        if known[k] == 0 then new[#new + 1] = item else found[#found + 1] = item end
      end
      if adopt and #found > 0 then redis.call('SREM', K_SEEN, unpack(found)) end
      if not adopt and #new > 0 then redis.call('SADD', K_SEEN, unpack(new)) end
    end
    if #new > 0 then
      redis.call('RPUSH', K_PENDING, unpack(new))
      added = added + #new
    end
    i = last + 1
  end
end

if extend then
  if stop > r_next then
    push(r_next, stop - 1, true)
    r_next = stop
    redis.call('HSET', K_COUNTERS, 'range_next', string.format('%d', stop))
  end
  return {added, r_next}
end
-- Not a contiguous extension: every index goes through `seen`, except those already in range.
local lo, hi = first, stop - 1
if r_first and not legacy then
  if lo < r_first then push(lo, math.min(hi, r_first - 1), false) end
  if hi >= r_next then push(math.max(lo, r_next), hi, false) end
else
  push(lo, hi, false)
end
local cursor = tonumber(redis.call('HGET', K_COUNTERS, 'range_next') or '-1')
if legacy and stop > cursor then
  redis.call('HSET', K_COUNTERS, 'range_next', string.format('%d', stop))
  cursor = stop
end
return notify_if(added > 0, {added, cursor})
