-- The rpm and daily-token counters of proxy_app/limits_redis.py (docs/contract.md §7), atomic per call.
-- ARGV[1] is the command; times are epoch seconds sent by the gateway (the same clock as "since").
--
-- take    KEYS: requests zset (member request id, score admitted at)
--         ARGV: rpm, since, now, window, request id  -> nil if admitted, else seconds until a slot frees
-- tokens  KEYS: spends zset (member "<tokens>:<request id>", score admitted at), meta hash {since, total}
--         ARGV: limit, since, now, window             -> nil while under, else seconds until under
-- spend   KEYS: as tokens; ARGV: member, admitted at, now, window, tokens, request id (settles its reserve)
-- take_tokens KEYS: as tokens, then held zset (member request id, score held since), held-n hash
--         (request id -> tokens); ARGV: limit, since, now, window, request id, reserve, lapse
--         -> nil and the reserve held, or seconds until under (spends), or -1 (reserves fill it)
-- release KEYS: as take_tokens; ARGV: request id
--
-- meta.total is the sum of the spends at or after meta.since (the latest moment the limit was set);
-- it is kept as spends arrive and expire, so a check never sums the whole day.

local command = ARGV[1]

local function tokens_of(member)
  return tonumber(string.match(member, '^(%d+):'))
end

local function advance(spends, meta, since_text, now, window)
  local stored_text = redis.call('HGET', meta, 'since') or '0'
  local stored = tonumber(stored_text)
  local total = tonumber(redis.call('HGET', meta, 'total') or '0')
  local cutoff = '(' .. (now - window)
  local expired = redis.call('ZRANGEBYSCORE', spends, '-inf', cutoff, 'WITHSCORES')
  for i = 1, #expired, 2 do
    if tonumber(expired[i + 1]) >= stored then
      total = total - tokens_of(expired[i])
    end
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', spends, '-inf', cutoff)
  end
  local since = tonumber(since_text)
  if since > stored then
    -- The limit was (re)set: only what was admitted from then on counts.
    stored, stored_text, total = since, since_text, 0
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', spends, since_text, '+inf')) do
      total = total + tokens_of(member)
    end
  end
  redis.call('HSET', meta, 'since', stored_text, 'total', total)
  return stored_text, total
end

if command == 'take' then
  local key = KEYS[1]
  local rpm, since, now, window = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local low = math.max(now - window, since)
  local counted = redis.call('ZCOUNT', key, low, '+inf')
  if counted >= rpm then
    -- A slot frees when the request that makes the count reach the limit leaves the window.
    local item = redis.call('ZRANGEBYSCORE', key, low, '+inf', 'WITHSCORES', 'LIMIT', counted - rpm, 1)
    return tostring(tonumber(item[2]) + window - now)
  end
  redis.call('ZADD', key, ARGV[4], ARGV[6])
  redis.call('PEXPIRE', key, math.ceil(window * 1000) + 1000)
  return false
end

-- Seconds until the spends from ``stored_text`` on drop below ``limit`` (they are at or above it).
local function wait_under(spends, stored_text, total, limit, now, window)
  local offset = 0
  while true do
    local batch = redis.call('ZRANGEBYSCORE', spends, stored_text, '+inf', 'WITHSCORES', 'LIMIT', offset, 500)
    if #batch == 0 then
      return tostring(window)
    end
    for i = 1, #batch, 2 do
      total = total - tokens_of(batch[i])
      if total < limit then
        return tostring(tonumber(batch[i + 1]) + window - now)
      end
    end
    offset = offset + 500
  end
end

if command == 'tokens' then
  local spends, meta = KEYS[1], KEYS[2]
  local limit, now, window = tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
  local stored_text, total = advance(spends, meta, ARGV[3], now, window)
  if total < limit then
    return false
  end
  return wait_under(spends, stored_text, total, limit, now, window)
end

local function settle(held, held_n, request_id)
  if held and redis.call('ZREM', held, request_id) == 1 then
    redis.call('HDEL', held_n, request_id)
  end
end

if command == 'take_tokens' then
  local spends, meta, held, held_n = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  local limit, now, window = tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
  local stored_text, total = advance(spends, meta, ARGV[3], now, window)
  if total >= limit then
    return wait_under(spends, stored_text, total, limit, now, window)
  end
  -- A reserve whose instance died before settling it lapses.
  for _, rid in ipairs(redis.call('ZRANGEBYSCORE', held, '-inf', '(' .. (now - tonumber(ARGV[8])))) do
    settle(held, held_n, rid)
  end
  local reserved = 0
  for _, n in ipairs(redis.call('HVALS', held_n)) do reserved = reserved + tonumber(n) end
  if total + reserved >= limit then
    return '-1' -- only reserves of requests in flight fill it
  end
  local reserve = tonumber(ARGV[7])
  if reserve > 0 then
    redis.call('ZADD', held, ARGV[4], ARGV[6])
    redis.call('HSET', held_n, ARGV[6], reserve)
    local ttl = math.ceil(tonumber(ARGV[8]) * 1000) + 60000
    redis.call('PEXPIRE', held, ttl)
    redis.call('PEXPIRE', held_n, ttl)
  end
  return false
end

if command == 'release' then
  settle(KEYS[3], KEYS[4], ARGV[2])
  return false
end

if command == 'spend' then
  local spends, meta = KEYS[1], KEYS[2]
  settle(KEYS[3], KEYS[4], ARGV[7])
  local at, now, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  local stored_text, total = advance(spends, meta, '0', now, window)
  if at > now - window and redis.call('ZADD', spends, 'NX', ARGV[3], ARGV[2]) == 1 then
    if at >= tonumber(stored_text) then
      redis.call('HSET', meta, 'total', total + tonumber(ARGV[6]))
    end
  end
  local ttl = math.ceil(window * 1000) + 60000
  redis.call('PEXPIRE', spends, ttl)
  redis.call('PEXPIRE', meta, ttl)
  return false
end

return redis.error_reply('unknown command ' .. tostring(command))
