-- Shared prelude of every queue script (prepended by workqueue/scripts.py).
-- KEYS layout (fixed order, all under the hash tag {name}; see workqueue/keys.py):
--   1 config(hash)  2 seen(set)  3 pending(list)  4 delayed(zset item->due)
--   5 leased(zset item->expiry)  6 holders(hash item->token)  7 attempts(hash item->n)
--   8 succeeded(set)  9 dead(zset item->time)  10 errors(hash item->last error)
--   11 acked(hash item->last acknowledged token)  12 counters(hash)  13 bucket(hash)
-- Times are seconds as floats; ARGV[1] is the caller's clock or '' for the server's TIME.
-- Floats are returned as strings (Redis would truncate Lua numbers to integers).

local K_CONFIG, K_SEEN, K_PENDING, K_DELAYED, K_LEASED = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_HOLDERS, K_ATTEMPTS, K_SUCCEEDED, K_DEAD, K_ERRORS = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local K_ACKED, K_COUNTERS, K_BUCKET = KEYS[11], KEYS[12], KEYS[13]

local TYPES = {'hash', 'set', 'list', 'zset', 'zset', 'hash', 'hash', 'set', 'zset', 'hash', 'hash',
               'hash', 'hash'}

local function fmt(x)
  return string.format('%.17g', x)
end

local function clock(arg)
  if arg ~= nil and arg ~= '' then
    return tonumber(arg)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Fail before any write when a key the script touches has the wrong type, so a WRONGTYPE
-- error can never leave a half-applied change (Redis does not roll scripts back).
local function check_types(...)
  for _, i in ipairs({...}) do
    local t = redis.call('TYPE', KEYS[i])['ok']
    if t ~= 'none' and t ~= TYPES[i] then
      error({err = 'WRONGTYPE queue key ' .. KEYS[i] .. ' holds a ' .. t .. ', expected a ' .. TYPES[i]})
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
-- whole tokens. Returns granted, seconds until the next token (0 when some are left).
local function bucket_take(key, now, qps, burst, want)
  local b = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = tonumber(b[1]), tonumber(b[2])
  if tokens == nil or ts == nil then
    tokens, ts = burst, now
  elseif now > ts then
    tokens = math.min(burst, tokens + (now - ts) * qps)
    ts = now
  end
  local granted = math.min(want, math.floor(tokens))
  if granted < 0 then granted = 0 end
  tokens = tokens - granted
  redis.call('HSET', key, 'tokens', fmt(tokens), 'ts', fmt(ts))
  local wait = 0
  if tokens < 1 then wait = (1 - tokens) / qps end
  return granted, wait
end

-- Move due retries from delayed to the tail of pending (at most `limit`).
local function promote(now, limit)
  local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, limit)
  if #due > 0 then
    redis.call('ZREM', K_DELAYED, unpack(due))
    redis.call('RPUSH', K_PENDING, unpack(due))
  end
  return #due
end

-- Re-queue (or dead-letter, when attempts are used up) leases expired at `now` (at most `limit`).
local function reap(now, limit, max_attempts)
  local expired = redis.call('ZRANGEBYSCORE', K_LEASED, '-inf', now, 'LIMIT', 0, limit)
  local retried = 0
  for _, item in ipairs(expired) do
    local holder = redis.call('HGET', K_HOLDERS, item) or '?'
    local attempts = tonumber(redis.call('HGET', K_ATTEMPTS, item) or '0')
    redis.call('ZREM', K_LEASED, item)
    redis.call('HDEL', K_HOLDERS, item)
    redis.call('HSET', K_ERRORS, item, 'lease expired (holder ' .. holder .. ', attempt ' .. attempts .. ')')
    if attempts >= max_attempts then
      redis.call('ZADD', K_DEAD, now, item)
    else
      redis.call('RPUSH', K_PENDING, item)
      retried = retried + 1
    end
  end
  if retried > 0 then redis.call('HINCRBY', K_COUNTERS, 'retries', retried) end
  return #expired
end

-- Why `token` no longer holds `item` (only called on the refusal path).
local function stale_reason(item, holder)
  if holder then return 're-leased to another holder (' .. holder .. ')' end
  if redis.call('SISMEMBER', K_SUCCEEDED, item) == 1 then return 'already completed by another holder' end
  if redis.call('ZSCORE', K_DEAD, item) then return 'dead-lettered' end
  if redis.call('ZSCORE', K_DELAYED, item) then return 'failed and waiting for a retry' end
  if redis.call('SISMEMBER', K_SEEN, item) == 0 then return 'not an item of this queue' end
  return 'lease expired and was taken back'
end

-- Complete the (item, token) pairs ARGV[first..]; returns {item, reason, ...} for refusals.
-- A retried acknowledgement (same token, already completed) is accepted silently.
local function complete_pairs(first)
  local stale = {}
  local done = 0
  for i = first, #ARGV, 2 do
    local item, token = ARGV[i], ARGV[i + 1]
    local holder = redis.call('HGET', K_HOLDERS, item)
    if holder == token then
      redis.call('ZREM', K_LEASED, item)
      redis.call('HDEL', K_HOLDERS, item)
      redis.call('SADD', K_SUCCEEDED, item)
      redis.call('HSET', K_ACKED, item, token)
      done = done + 1
    elseif not (redis.call('HGET', K_ACKED, item) == token
                and redis.call('SISMEMBER', K_SUCCEEDED, item) == 1) then
      stale[#stale + 1] = item
      stale[#stale + 1] = stale_reason(item, holder)
    end
  end
  if done > 0 then redis.call('HINCRBY', K_COUNTERS, 'completed', done) end
  return stale
end

-- Lease up to `n` items to `worker` for `lease_seconds` ('' = configured). Returns the reply
-- {now, expiry, hint, item, token, attempt, ...}; hint > 0 = seconds until it is worth asking
-- again when nothing was leased (rate limit, next retry due or next lease expiry), -1 = idle.
local function lease_items(now, worker, n, lease_arg)
  local lease_seconds, max_attempts, qps, burst = config()
  if lease_arg ~= nil and lease_arg ~= '' then lease_seconds = tonumber(lease_arg) end
  promote(now, 1000)
  reap(now, 1000, max_attempts)
  local want = math.min(n, redis.call('LLEN', K_PENDING))
  local hint = 0
  if want > 0 and qps then
    want, hint = bucket_take(K_BUCKET, now, qps, burst, want)
  end
  local expiry = now + lease_seconds
  local reply = {fmt(now), fmt(expiry), '0'}
  if want <= 0 then
    if hint <= 0 then
      hint = -1
      local nxt = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
      if nxt[2] then hint = tonumber(nxt[2]) - now end
      local exp = redis.call('ZRANGE', K_LEASED, 0, 0, 'WITHSCORES')
      if exp[2] and (hint < 0 or tonumber(exp[2]) - now < hint) then hint = tonumber(exp[2]) - now end
      if hint == 0 then hint = 0.001 end
    end
    reply[3] = fmt(hint)
    return reply
  end
  local items = redis.call('LPOP', K_PENDING, want)
  local seq = redis.call('HINCRBY', K_COUNTERS, 'seq', #items) - #items
  local zargs = {}
  for i, item in ipairs(items) do
    local attempt = redis.call('HINCRBY', K_ATTEMPTS, item, 1)
    local token = (seq + i) .. ':' .. worker
    redis.call('HSET', K_HOLDERS, item, token)
    zargs[#zargs + 1] = expiry
    zargs[#zargs + 1] = item
    reply[#reply + 1] = item
    reply[#reply + 1] = token
    reply[#reply + 1] = attempt
  end
  redis.call('ZADD', K_LEASED, unpack(zargs))
  return reply
end
