-- Shared prelude of every queue script (prepended by workqueue/scripts.py), and the body of the
-- worker calls' function library (workqueue/scripts.py: library()).
--
-- Keys, all under the hash tag {name} (see workqueue/keys.py), numbered for check_types():
--   1 config(hash)  2 seen(set: every item ever seeded)  3 pending(list)
--   4 timers(zset item -> lease expiry when the item is leased, retry due time when delayed)
--   5 holders(hash item -> lease token; an item is leased exactly when it has a holder)
--   6 attempts(hash item -> leases counted)  7 succeeded(hash item -> token that completed it)
--   8 dead(zset item -> time)  9 errors(hash item -> last error)
--   10 acked(hash item -> token of the last fail/release)  11 counters(hash)  12 bucket(hash)
--   13 durations(hash: per-item processing time histogram, see record_durations)
-- Scripts are called with all 13 keys declared, in this order (KEYS[1..13]): Redis Cluster
-- checks only declared keys before running a script, and during a slot migration a script
-- touching undeclared keys can fail half-way ("Script attempted to access a non local key").
-- With one key (KEYS[1] = config) the others are derived from its prefix: the layout of
-- releases before the cluster support, kept only so benchmarks/bench_declared_keys.py can
-- measure what declaring costs; LeaseQueue always declares every key.
--
-- Time: ARGV[1] is the caller's clock in seconds, or '' for the server's TIME. Times are
-- returned as integer microseconds (Redis truncates Lua numbers to integers).
--
-- Failure safety: Redis does not roll a script back when a command fails in it. Rarely used
-- scripts call check_types() first, so a WRONGTYPE error changes nothing. The hot paths
-- (lease, complete) skip that check for speed: complete adds an item to its new place before
-- removing it from the old one, and lease puts popped items back if a later write fails, so an
-- error half-way never loses an item.

local K_CONFIG, K_SEEN, K_PENDING, K_TIMERS, K_HOLDERS, K_ATTEMPTS, K_SUCCEEDED, K_DEAD, K_ERRORS,
      K_ACKED, K_COUNTERS, K_BUCKET, K_DURATIONS

-- Bind the K_* names to this call's keys (each script and function calls it first: as a
-- function library, the K_* are the library's upvalues, set again by every call).
local function bind_keys()
  if #KEYS == 13 then
    K_CONFIG, K_SEEN, K_PENDING, K_TIMERS, K_HOLDERS, K_ATTEMPTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
    K_SUCCEEDED, K_DEAD, K_ERRORS, K_ACKED, K_COUNTERS, K_BUCKET = KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12]
    K_DURATIONS = KEYS[13]
  else
    local PREFIX = string.sub(KEYS[1], 1, -7)
    K_CONFIG, K_SEEN, K_PENDING = KEYS[1], PREFIX .. 'seen', PREFIX .. 'pending'
    K_TIMERS, K_HOLDERS, K_ATTEMPTS = PREFIX .. 'timers', PREFIX .. 'holders', PREFIX .. 'attempts'
    K_SUCCEEDED, K_DEAD, K_ERRORS = PREFIX .. 'succeeded', PREFIX .. 'dead', PREFIX .. 'errors'
    K_ACKED, K_COUNTERS, K_BUCKET = PREFIX .. 'acked', PREFIX .. 'counters', PREFIX .. 'bucket'
    K_DURATIONS = PREFIX .. 'durations'
  end
end

local function fmt(x)
  return string.format('%.17g', x)
end

local function us(seconds)
  return math.floor(seconds * 1000000 + 0.5)
end

local function clock(arg)
  if arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Raise a WRONGTYPE error naming the key if a listed key (by number) has the wrong type.
local function check_types(...)
  local keys = {K_CONFIG, K_SEEN, K_PENDING, K_TIMERS, K_HOLDERS, K_ATTEMPTS, K_SUCCEEDED, K_DEAD,
                K_ERRORS, K_ACKED, K_COUNTERS, K_BUCKET, K_DURATIONS}
  local types = {'hash', 'set', 'list', 'zset', 'hash', 'hash', 'hash', 'zset', 'hash', 'hash',
                 'hash', 'hash', 'hash'}
  for _, i in ipairs({...}) do
    local t = redis.call('TYPE', keys[i])['ok']
    if t ~= 'none' and t ~= types[i] then
      error({err = 'WRONGTYPE queue key ' .. keys[i] .. ' holds a ' .. t .. ', expected a ' .. types[i]})
    end
  end
end

-- The config, and `due`: a lower bound of every score in timers (nil = unknown: check now).
-- Kept in the config hash (field 'due', never written by configure) so the hot path reads it
-- with the config in one command, and skips the timers when nothing can be due yet.
local function config()
  local c = redis.call('HMGET', K_CONFIG, 'lease_seconds', 'max_attempts', 'rate_qps', 'rate_burst',
                       'due')
  if not c[1] then
    error({err = 'NOCONFIG queue config ' .. K_CONFIG .. ' is missing (queue deleted or never configured)'})
  end
  return tonumber(c[1]), tonumber(c[2]), tonumber(c[3]), tonumber(c[4]), tonumber(c[5])
end

-- Keep `due` a lower bound after a timer was set to `score` (`due` as config() returned it).
local function timer_set(score, due)
  if due and score < due then redis.call('HSET', K_CONFIG, 'due', fmt(score)) end
end

-- Per-item processing time (lease to completion) as a histogram in the durations hash: field =
-- the bucket's upper bound in seconds as written below ('+Inf' past the last), holding the items
-- of that bucket only (not cumulative: the reader adds them up); 'sum_us' = total microseconds.
-- Bounds: Prometheus' default buckets (5 ms .. 10 s) extended to 1 hour (workqueue/durations.py
-- holds the same list). O(1) per item: one HINCRBY per bucket touched and one for the sum; the
-- bucket is found by comparisons (no table is built per call).
local function duration_field(d)
  if d <= 1 then
    if d <= 0.05 then
      if d <= 0.005 then return '0.005' elseif d <= 0.01 then return '0.01'
      elseif d <= 0.025 then return '0.025' else return '0.05' end
    end
    if d <= 0.1 then return '0.1' elseif d <= 0.25 then return '0.25'
    elseif d <= 0.5 then return '0.5' else return '1' end
  end
  if d <= 2.5 then return '2.5' elseif d <= 5 then return '5' elseif d <= 10 then return '10'
  elseif d <= 30 then return '30' elseif d <= 60 then return '60' elseif d <= 120 then return '120'
  elseif d <= 300 then return '300' elseif d <= 600 then return '600'
  elseif d <= 1800 then return '1800' elseif d <= 3600 then return '3600' end
  return '+Inf'
end

-- Record the durations of the completed leases `tokens` (their lease time is in the token, see
-- lease_items; tokens without it are skipped).
local function record_durations(now, tokens)
  local counts, fields, sum = {}, {}, 0
  for _, token in ipairs(tokens) do
    local ms = string.match(token, '@(%d+)%.')
    if ms then
      local d = math.max(now - tonumber(ms) / 1000, 0)
      local field = duration_field(d)
      if not counts[field] then
        counts[field] = 0
        fields[#fields + 1] = field
      end
      counts[field] = counts[field] + 1
      sum = sum + d
    end
  end
  if #fields == 0 then return end
  for _, field in ipairs(fields) do
    local n = counts[field]
    if n == 1 then n = '1' end
    redis.call('HINCRBY', K_DURATIONS, field, n)
  end
  redis.call('HINCRBY', K_DURATIONS, 'sum_us', string.format('%d', us(sum)))
end

-- record_durations of one token (the single-item hot path: no table built).
local function record_duration(now, token)
  local ms = string.match(token, '@(%d+)%.')
  if not ms then return end
  local d = math.max(now - tonumber(ms) / 1000, 0)
  redis.call('HINCRBY', K_DURATIONS, duration_field(d), '1')
  redis.call('HINCRBY', K_DURATIONS, 'sum_us', string.format('%d', us(d)))
end

-- Range queues (seed_range) do not list their items in `seen`: the contiguous index range
-- [range_first, range_next) of the counters hash is known by its bounds. Returns first, next
-- (nil, nil when the queue has no such range; queues seeded before it keep using `seen`).
local function range_bounds()
  local r = redis.call('HMGET', K_COUNTERS, 'range_first', 'range_next')
  local first, nxt = tonumber(r[1]), tonumber(r[2])
  if first == nil or nxt == nil then return nil, nil end
  return first, nxt
end

-- The index an item names when it is a range item (canonical decimal, no sign, no leading
-- zero), else nil.
local function as_index(item)
  if string.find(item, '^%d+$') and (#item == 1 or string.sub(item, 1, 1) ~= '0') and #item < 16 then
    return tonumber(item)
  end
  return nil
end

-- True when the queue knows `item` (seeded, added or in the range).
local function is_known(item)
  local index = as_index(item)
  if index then
    local first, nxt = range_bounds()
    if first and index >= first and index < nxt then return true end
  end
  return redis.call('SISMEMBER', K_SEEN, item) == 1
end

-- Token bucket kept in a hash {tokens, ts}: refills at qps up to burst; takes up to `want`
-- whole tokens. Returns granted, seconds until the next whole token (0 when one is left).
-- A clock that goes backwards refills nothing.
local function bucket_take(key, now, qps, burst, want)
  local b = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = tonumber(b[1]), tonumber(b[2])
  if tokens == nil or ts == nil then
    tokens, ts = burst, now
  elseif now > ts then
    tokens = math.min(burst, tokens + (now - ts) * qps)
    ts = now
  end
  local granted = math.max(0, math.min(want, math.floor(tokens)))
  tokens = tokens - granted
  redis.call('HSET', key, 'tokens', fmt(tokens), 'ts', fmt(ts))
  local wait = 0
  if tokens < 1 then wait = (1 - tokens) / qps end
  return granted, wait
end

-- Handle up to `limit` timers due at `now`: a due retry goes to the tail of pending; an
-- expired lease is re-queued (attempt already counted) or, with attempts used up,
-- dead-lettered with the error 'lease expired'. Returns the number of expired leases and the
-- new lower bound of the timers (also stored as 'due' in the config hash).
local function next_due(now, fired, limit)
  -- After a fire_timers pass: store (and return) the new lower bound of the timers.
  local bound = now
  if fired < limit then
    local nxt = redis.call('ZRANGE', K_TIMERS, 0, 0, 'WITHSCORES')
    bound = 1e300
    if nxt[2] then bound = tonumber(nxt[2]) end
  end
  redis.call('HSET', K_CONFIG, 'due', fmt(bound))
  return bound
end

local function fire_timers(now, limit, max_attempts)
  local due = redis.call('ZRANGEBYSCORE', K_TIMERS, '-inf', now, 'LIMIT', 0, limit)
  if #due == 0 then
    return 0, next_due(now, 0, limit)
  end
  local holders = redis.call('HMGET', K_HOLDERS, unpack(due))
  local expired, was_held, requeue, errors, dead = {}, {}, {}, {}, {}
  for i, item in ipairs(due) do
    if holders[i] then
      expired[#expired + 1] = item
      was_held[#expired] = holders[i]
    else
      requeue[#requeue + 1] = item
    end
  end
  if #expired > 0 then
    local attempts = redis.call('HMGET', K_ATTEMPTS, unpack(expired))
    for i, item in ipairs(expired) do
      local n = tonumber(attempts[i]) or 0
      errors[#errors + 1] = item
      errors[#errors + 1] = 'lease expired (holder ' .. was_held[i] .. ', attempt ' .. n .. ')'
      if n >= max_attempts then
        dead[#dead + 1] = now
        dead[#dead + 1] = item
      else
        requeue[#requeue + 1] = item
      end
    end
  end
  if #expired > 0 then redis.call('HSET', K_ERRORS, unpack(errors)) end
  if #dead > 0 then redis.call('ZADD', K_DEAD, unpack(dead)) end
  if #requeue > 0 then redis.call('RPUSH', K_PENDING, unpack(requeue)) end
  if #requeue > #due - #expired then
    redis.call('HINCRBY', K_COUNTERS, 'retries', #requeue - (#due - #expired))
  end
  redis.call('ZREM', K_TIMERS, unpack(due))
  if #expired > 0 then redis.call('HDEL', K_HOLDERS, unpack(expired)) end
  return #expired, next_due(now, #due, limit)
end

-- Why `token` no longer holds `item` (only called on the refusal path).
local function stale_reason(item, holder)
  if holder then return 're-leased to another holder (' .. holder .. ')' end
  if redis.call('HEXISTS', K_SUCCEEDED, item) == 1 then return 'already completed by another holder' end
  if redis.call('ZSCORE', K_DEAD, item) then return 'dead-lettered' end
  if redis.call('ZSCORE', K_TIMERS, item) then return 'failed and waiting for a retry' end
  if not is_known(item) then return 'not an item of this queue' end
  return 'lease expired and was taken back'
end

-- Complete the (item, token) pairs in ARGV[first..]; returns {item, reason, ...} of refused
-- pairs. Repeating a completion with the same token (e.g. after a lost reply) is accepted.
local function complete_pairs(first, now)
  if #ARGV < first then return {} end
  if #ARGV == first + 1 then
    -- One item (the single-item hot path): four commands.
    local item, token = ARGV[first], ARGV[first + 1]
    local holder = redis.call('HGET', K_HOLDERS, item)
    if holder == token then
      redis.call('HSET', K_SUCCEEDED, item, token)
      redis.call('ZREM', K_TIMERS, item)
      redis.call('HDEL', K_HOLDERS, item)
      record_duration(now, token)
    elseif redis.call('HGET', K_SUCCEEDED, item) ~= token then
      return {item, stale_reason(item, holder)}
    end
    return {}
  end
  local items, tokens = {}, {}
  for i = first, #ARGV, 2 do
    items[#items + 1] = ARGV[i]
    tokens[#items] = ARGV[i + 1]
  end
  local holders = redis.call('HMGET', K_HOLDERS, unpack(items))
  local done, seen, stale, succ, done_tokens = {}, {}, {}, {}, {}
  for i, item in ipairs(items) do
    local token = tokens[i]
    if holders[i] == token then
      if not seen[item] then
        seen[item] = true
        done[#done + 1] = item
        done_tokens[#done] = token
        succ[#succ + 1] = item
        succ[#succ + 1] = token
      end
    elseif redis.call('HGET', K_SUCCEEDED, item) ~= token then
      stale[#stale + 1] = item
      stale[#stale + 1] = stale_reason(item, holders[i])
    end
  end
  if #done > 0 then
    redis.call('HSET', K_SUCCEEDED, unpack(succ))
    redis.call('ZREM', K_TIMERS, unpack(done))
    redis.call('HDEL', K_HOLDERS, unpack(done))
    record_durations(now, done_tokens)
  end
  return stale
end

-- Lease up to `n` items to `worker` for `lease_seconds` ('' = configured); the i-th lease's
-- token is nonce .. '@' .. leased_ms .. '.' .. i .. ':' .. worker (the caller makes nonce unique
-- per call; leased_ms = floor(now_us / 1000), the lease time that lease listings report).
-- Reply: {now_us, expiry_us, hint_us, item, attempt, item, attempt, ...}. When nothing was
-- leased, hint_us says when it is worth asking again (rate limit, next timer), -1 = idle.
local function lease_items(now, worker, n, lease_arg, nonce)
  -- Only the fields every call needs (each field read costs); the others when used.
  local c = redis.call('HMGET', K_CONFIG, 'lease_seconds', 'rate_qps', 'due')
  if not c[1] then config() end -- raises NOCONFIG
  -- (a missing field is false, not nil: tonumber(false) is nil)
  local lease_seconds, qps, due = tonumber(c[1]), tonumber(c[2]), tonumber(c[3])
  if lease_arg ~= '' then lease_seconds = tonumber(lease_arg) end
  if due == nil or due <= now then
    local _
    _, due = fire_timers(now, 1000, tonumber(redis.call('HGET', K_CONFIG, 'max_attempts')))
  end
  local want = n
  local hint = 0
  if qps then
    want = math.min(n, redis.call('LLEN', K_PENDING))
    local burst = tonumber(redis.call('HGET', K_CONFIG, 'rate_burst'))
    if want > 0 then want, hint = bucket_take(K_BUCKET, now, qps, burst, want) end
  end
  local items = {}
  if want == 1 then
    local item = redis.call('LPOP', K_PENDING)
    if item then items = {item} end
  elseif want > 0 then
    items = redis.call('LPOP', K_PENDING, want) or {}
  end
  local expiry = now + lease_seconds
  if #items == 0 then
    if hint <= 0 then
      hint = -1
      local nxt = redis.call('ZRANGE', K_TIMERS, 0, 0, 'WITHSCORES')
      if nxt[2] then hint = math.max(tonumber(nxt[2]) - now, 0.000001) end
    end
    return {us(now), us(expiry), us(hint)}
  end
  local reply = {us(now), us(expiry), 0}
  local expiry_s = fmt(expiry)
  local prefix = nonce .. '@' .. string.format('%d', math.floor(us(now) / 1000)) .. '.'
  local suffix = ':' .. worker
  local ok, err
  if #items == 1 then
    -- One item (the single-item hot path): three writes, no number formatting but the expiry's.
    local item = items[1]
    ok, err = pcall(function()
      reply[5] = redis.call('HINCRBY', K_ATTEMPTS, item, '1')
      reply[4] = item
      redis.call('HSET', K_HOLDERS, item, prefix .. '1' .. suffix)
      redis.call('ZADD', K_TIMERS, expiry_s, item)
      timer_set(expiry, due)
    end)
  else
    ok, err = pcall(function()
      local hold_args, zargs = {}, {}
      local previous = redis.call('HMGET', K_ATTEMPTS, unpack(items))
      local att_args = {}
      for i, item in ipairs(items) do
        local a = (tonumber(previous[i]) or 0) + 1
        att_args[2 * i - 1] = item
        att_args[2 * i] = a
        reply[2 * i + 2] = item
        reply[2 * i + 3] = a
        hold_args[2 * i - 1] = item
        hold_args[2 * i] = prefix .. i .. suffix
        zargs[2 * i - 1] = expiry_s
        zargs[2 * i] = item
      end
      redis.call('HSET', K_ATTEMPTS, unpack(att_args))
      redis.call('HSET', K_HOLDERS, unpack(hold_args))
      redis.call('ZADD', K_TIMERS, unpack(zargs))
      timer_set(expiry, due)
    end)
  end
  if not ok then
    -- Undo what can be undone and put the items back at the head: nothing is lost.
    redis.pcall('HDEL', K_HOLDERS, unpack(items))
    redis.pcall('ZREM', K_TIMERS, unpack(items))
    local back = {}
    for i = #items, 1, -1 do back[#back + 1] = items[i] end
    redis.call('LPUSH', K_PENDING, unpack(back))
    error(err)
  end
  return reply
end

-- Tell the operator that this queue changed: one message on the queue's own channel
-- wq:{name}:events (SPUBLISH: sharded pub/sub, same slot as the keys, so it works inside a
-- script on a Redis Cluster, and like PUBLISH on one server). No subscriber: a no-op. The
-- message carries nothing; the operator reads the queue itself (messages may be lost).
local function notify()
  redis.call('SPUBLISH', string.sub(K_CONFIG, 1, -7) .. 'events', '')
end

-- notify() when `changed`, then return `reply` (one line at the end of a script).
local function notify_if(changed, reply)
  if changed then notify() end
  return reply
end
