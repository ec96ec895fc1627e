-- Shared prelude of every queue script (prepended by workqueue/scripts.py).
--
-- Keys, all under the hash tag {name} (see workqueue/keys.py), numbered for check_types():
--   1 config(hash)  2 seen(set: every item ever seeded)  3 pending(list)
--   4 timers(zset item -> lease expiry when the item is leased, retry due time when delayed)
--   5 holders(hash item -> lease token; an item is leased exactly when it has a holder)
--   6 attempts(hash item -> leases counted)  7 succeeded(hash item -> token that completed it)
--   8 dead(zset item -> time)  9 errors(hash item -> last error)
--   10 acked(hash item -> token of the last fail/release)  11 counters(hash)  12 bucket(hash)
-- Scripts are called with all 12 keys declared, in this order (KEYS[1..12]): Redis Cluster
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
      K_ACKED, K_COUNTERS, K_BUCKET
if #KEYS == 12 then
  K_CONFIG, K_SEEN, K_PENDING, K_TIMERS, K_HOLDERS, K_ATTEMPTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
  K_SUCCEEDED, K_DEAD, K_ERRORS, K_ACKED, K_COUNTERS, K_BUCKET = KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12]
else
  local PREFIX = string.sub(KEYS[1], 1, -7)
  K_CONFIG, K_SEEN, K_PENDING = KEYS[1], PREFIX .. 'seen', PREFIX .. 'pending'
  K_TIMERS, K_HOLDERS, K_ATTEMPTS = PREFIX .. 'timers', PREFIX .. 'holders', PREFIX .. 'attempts'
  K_SUCCEEDED, K_DEAD, K_ERRORS = PREFIX .. 'succeeded', PREFIX .. 'dead', PREFIX .. 'errors'
  K_ACKED, K_COUNTERS, K_BUCKET = PREFIX .. 'acked', PREFIX .. 'counters', PREFIX .. 'bucket'
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
                K_ERRORS, K_ACKED, K_COUNTERS, K_BUCKET}
  local types = {'hash', 'set', 'list', 'zset', 'hash', 'hash', 'hash', 'zset', 'hash', 'hash',
                 'hash', 'hash'}
  for _, i in ipairs({...}) do
    local t = redis.call('TYPE', keys[i])['ok']
    if t ~= 'none' and t ~= types[i] then
      error({err = 'WRONGTYPE queue key ' .. keys[i] .. ' holds a ' .. t .. ', expected a ' .. types[i]})
    end
  end
end

local function config()
  local c = redis.call('HMGET', K_CONFIG, 'lease_seconds', 'max_attempts', 'rate_qps', 'rate_burst')
  if not c[1] then
    error({err = 'NOCONFIG queue config ' .. K_CONFIG .. ' is missing (queue deleted or never configured)'})
  end
  return tonumber(c[1]), tonumber(c[2]), tonumber(c[3]), tonumber(c[4])
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
-- dead-lettered with the error 'lease expired'. Returns the number of expired leases.
local function fire_timers(now, limit, max_attempts)
  local due = redis.call('ZRANGEBYSCORE', K_TIMERS, '-inf', now, 'LIMIT', 0, limit)
  if #due == 0 then return 0 end
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
  return #expired
end

-- Why `token` no longer holds `item` (only called on the refusal path).
local function stale_reason(item, holder)
  if holder then return 're-leased to another holder (' .. holder .. ')' end
  if redis.call('HEXISTS', K_SUCCEEDED, item) == 1 then return 'already completed by another holder' end
  if redis.call('ZSCORE', K_DEAD, item) then return 'dead-lettered' end
  if redis.call('ZSCORE', K_TIMERS, item) then return 'failed and waiting for a retry' end
  if redis.call('SISMEMBER', K_SEEN, item) == 0 then return 'not an item of this queue' end
  return 'lease expired and was taken back'
end

-- Complete the (item, token) pairs in ARGV[first..]; returns {item, reason, ...} of refused
-- pairs. Repeating a completion with the same token (e.g. after a lost reply) is accepted.
local function complete_pairs(first)
  if #ARGV < first then return {} end
  local items, tokens = {}, {}
  for i = first, #ARGV, 2 do
    items[#items + 1] = ARGV[i]
    tokens[#items] = ARGV[i + 1]
  end
  local holders = redis.call('HMGET', K_HOLDERS, unpack(items))
  local done, seen, stale, succ = {}, {}, {}, {}
  for i, item in ipairs(items) do
    local token = tokens[i]
    if holders[i] == token then
      if not seen[item] then
        seen[item] = true
        done[#done + 1] = item
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
  end
  return stale
end

-- Lease up to `n` items to `worker` for `lease_seconds` ('' = configured); the i-th lease's
-- token is nonce .. '@' .. leased_ms .. '.' .. i .. ':' .. worker (the caller makes nonce unique
-- per call; leased_ms = floor(now_us / 1000), the lease time that lease listings report).
-- Reply: {now_us, expiry_us, hint_us, item, attempt, item, attempt, ...}. When nothing was
-- leased, hint_us says when it is worth asking again (rate limit, next timer), -1 = idle.
local function lease_items(now, worker, n, lease_arg, nonce)
  local lease_seconds, max_attempts, qps, burst = config()
  if lease_arg ~= '' then lease_seconds = tonumber(lease_arg) end
  fire_timers(now, 1000, max_attempts)
  local want = n
  local hint = 0
  if qps then
    want = math.min(n, redis.call('LLEN', K_PENDING))
    if want > 0 then want, hint = bucket_take(K_BUCKET, now, qps, burst, want) end
  end
  local items = {}
  if want > 0 then items = redis.call('LPOP', K_PENDING, want) or {} end
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
  local ok, err = pcall(function()
    local hold_args, zargs = {}, {}
    local expiry_s = fmt(expiry)
    local prefix = nonce .. '@' .. string.format('%d', math.floor(us(now) / 1000)) .. '.'
    local suffix = ':' .. worker
    if #items == 1 then
      reply[5] = redis.call('HINCRBY', K_ATTEMPTS, items[1], 1)
      reply[4] = items[1]
    else
      local previous = redis.call('HMGET', K_ATTEMPTS, unpack(items))
      local att_args = {}
      for i, item in ipairs(items) do
        local a = (tonumber(previous[i]) or 0) + 1
        att_args[2 * i - 1] = item
        att_args[2 * i] = a
        reply[2 * i + 2] = item
        reply[2 * i + 3] = a
      end
      redis.call('HSET', K_ATTEMPTS, unpack(att_args))
    end
    for i, item in ipairs(items) do
      hold_args[2 * i - 1] = item
      hold_args[2 * i] = prefix .. i .. suffix
      zargs[2 * i - 1] = expiry_s
      zargs[2 * i] = item
    end
    redis.call('HSET', K_HOLDERS, unpack(hold_args))
    redis.call('ZADD', K_TIMERS, unpack(zargs))
  end)
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
