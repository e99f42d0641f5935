-- Seadragon's shared queue and slots in Redis: one script, so every step is atomic.
-- Used by proxy_app/scheduler_redis.py, which documents the keys and the lease.
--
-- ARGV[1] command ("enqueue" | "leave" | "tick"), ARGV[2] key prefix,
-- ARGV[3] routing JSON {"backends": {url: slots}, "routes": {model: [url]}, "default": [url]}
--         (healthy backends only, in configured order), ARGV[4] lease in ms; the rest per command.
-- Keys are built from the prefix, so this runs on a single Redis (not a cluster).

local cmd, P = ARGV[1], ARGV[2]
local routing = cjson.decode(ARGV[3])
local lease = tonumber(ARGV[4])
-- A slot's lease outlives its owner's heartbeat (PX lease) by 1 ms, so when a crashed
-- instance's slots come back its waiting tickets are already known to be ownerless.
local lease_end = nil
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
lease_end = now + lease + 1

local function tkey(rid) return P .. ':t:' .. rid end

-- Take a waiting ticket out of every index (its hash stays; the caller decides).
local function unqueue(rid, member, model, source)
  redis.call('ZREM', P .. ':queue', member)
  redis.call('ZREM', P .. ':q:' .. model, member)
  redis.call('ZREM', P .. ':arrivals', rid)
  redis.call('HINCRBY', P .. ':counts', 'queued:' .. source, -1)
end

-- A waiting ticket leaves for good.
local function drop(rid)
  local f = redis.call('HMGET', tkey(rid), 'member', 'model', 'source', 'state')
  if f[1] and f[4] == 'queued' then unqueue(rid, f[1], f[2], f[3]) end
  redis.call('ZREM', P .. ':arrivals', rid)
  redis.call('DEL', tkey(rid))
end

-- Give back a held slot; the ZREM result makes a second release a no-op.
local function release(rid, url, source)
  if redis.call('ZREM', P .. ':leases:' .. url, rid) == 1 then
    redis.call('HINCRBY', P .. ':counts', 'active:' .. source, -1)
  end
  redis.call('DEL', tkey(rid))
end

-- Leases nobody refreshed (a crashed instance) expire and free their slots.
local function purge_leases(url)
  local key = P .. ':leases:' .. url
  for _, rid in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', now)) do
    local source = redis.call('HGET', tkey(rid), 'source')
    release(rid, url, source or 'unknown')
  end
end

local function any_free(free)
  for _, n in pairs(free) do
    if n > 0 then return true end
  end
  return false
end

-- Grant free slots to the best waiting tickets whose model has a free backend:
-- the heads of the per-model queues in (score, member) order; the candidate
-- backend with the most free slots. The owner hears through its inbox list.
local function dispatch()
  local free = {}
  for url, slots in pairs(routing.backends) do
    purge_leases(url)
    free[url] = slots - redis.call('ZCARD', P .. ':leases:' .. url)
  end
  while any_free(free) do
    local heads = {}
    for _, m in ipairs(redis.call('SMEMBERS', P .. ':models')) do
      local h = redis.call('ZRANGE', P .. ':q:' .. m, 0, 0, 'WITHSCORES')
      if #h == 0 then
        redis.call('SREM', P .. ':models', m)
      else
        heads[#heads + 1] = {h[1], tonumber(h[2]), m}
      end
    end
    table.sort(heads, function(a, b)
      if a[2] ~= b[2] then return a[2] < b[2] end
      return a[1] < b[1]
    end)
    local member, model, url
    for _, h in ipairs(heads) do
      local best, most = nil, 0
      for _, u in ipairs(routing.routes[h[3]] or routing.default) do
        if (free[u] or 0) > most then best, most = u, free[u] end
      end
      if best then
        member, model, url = h[1], h[3], best
        break
      end
    end
    if not member then return end
    local rid = string.sub(member, 17)
    local f = redis.call('HMGET', tkey(rid), 'owner', 'source', 'deadline')
    local source = f[2] or 'unknown'
    unqueue(rid, member, model, source)
    local alive = f[1] and redis.call('EXISTS', P .. ':inst:' .. f[1]) == 1
    if alive and tonumber(f[3]) > now then
      redis.call('ZADD', P .. ':leases:' .. url, lease_end, rid)
      redis.call('HSET', tkey(rid), 'state', 'granted', 'backend', url)
      redis.call('HINCRBY', P .. ':counts', 'active:' .. source, 1)
      -- Always told, even the enqueuing caller that also gets the answer directly:
      -- if that caller was cancelled meanwhile, the notice is what gives the slot back.
      local inbox = P .. ':granted:' .. f[1]
      redis.call('RPUSH', inbox, url .. '\n' .. rid)
      redis.call('PEXPIRE', inbox, lease * 4)
      free[url] = free[url] - 1
    else
      -- Its instance is gone or it timed out: never grant it.
      redis.call('DEL', tkey(rid))
    end
  end
end

if cmd == 'enqueue' then
  -- ARGV: 5 rid, 6 model group, 7 source, 8 base priority, 9 aging per minute,
  -- 10 minutes (or '' for Redis TIME), 11 owner, 12 timeout ms, 13 max queue
  local rid, model, source, owner = ARGV[5], ARGV[6], ARGV[7], ARGV[11]
  if redis.call('EXISTS', tkey(rid)) == 1 then return {'duplicate'} end
  redis.call('SET', P .. ':inst:' .. owner, '1', 'PX', lease)
  local minutes = tonumber(ARGV[10]) or (tonumber(clock[1]) + tonumber(clock[2]) / 1e6) / 60
  local score = string.format('%.17g', tonumber(ARGV[8]) + tonumber(ARGV[9]) * minutes)
  local member = string.format('%016d', redis.call('INCR', P .. ':seq')) .. rid
  redis.call('HSET', tkey(rid), 'member', member, 'model', model, 'source', source, 'owner', owner,
    'deadline', now + tonumber(ARGV[12]), 'state', 'queued')
  redis.call('ZADD', P .. ':queue', score, member)
  redis.call('ZADD', P .. ':q:' .. model, score, member)
  redis.call('SADD', P .. ':models', model)
  redis.call('ZADD', P .. ':arrivals', now, rid)
  redis.call('HINCRBY', P .. ':counts', 'queued:' .. source, 1)
  dispatch()
  local f = redis.call('HMGET', tkey(rid), 'state', 'backend')
  if f[1] == 'granted' then return {'granted', f[2]} end
  if redis.call('ZCARD', P .. ':queue') > tonumber(ARGV[13]) then
    drop(rid)
    return {'full'}
  end
  return {'queued', member, redis.call('ZRANK', P .. ':queue', member)}
elseif cmd == 'leave' then
  -- ARGV: 5 rid. Leaving the queue or giving back the slot, whichever it holds.
  local rid = ARGV[5]
  local f = redis.call('HMGET', tkey(rid), 'state', 'backend', 'source')
  if f[1] == 'granted' then
    release(rid, f[2], f[3])
  elseif f[1] == 'queued' then
    drop(rid)
  end
  dispatch()
  return 'ok'
elseif cmd == 'tick' then
  -- ARGV: 5 owner, 6 timeout ms, 7 JSON [[url, rid]] held here, 8 JSON [member] whose rank
  -- is wanted, 9 JSON [url] every configured backend.
  redis.call('SET', P .. ':inst:' .. ARGV[5], '1', 'PX', lease)
  for _, held in ipairs(cjson.decode(ARGV[7])) do
    redis.call('ZADD', P .. ':leases:' .. held[1], 'XX', lease_end, held[2])
  end
  -- Owners time out their own tickets; this catches those whose owner is gone.
  local stale = now - tonumber(ARGV[6]) - 1000
  for _, rid in ipairs(redis.call('ZRANGEBYSCORE', P .. ':arrivals', '-inf', stale, 'LIMIT', 0, 1000)) do
    drop(rid)
  end
  local urls = cjson.decode(ARGV[9])
  for _, url in ipairs(urls) do purge_leases(url) end
  dispatch()
  local ranks = {}
  for i, member in ipairs(cjson.decode(ARGV[8])) do
    ranks[i] = redis.call('ZRANK', P .. ':queue', member) or -1
  end
  local in_use = {}
  for i, url in ipairs(urls) do in_use[i] = redis.call('ZCARD', P .. ':leases:' .. url) end
  local oldest = redis.call('ZRANGE', P .. ':arrivals', 0, 0, 'WITHSCORES')
  return {redis.call('ZCARD', P .. ':queue'), redis.call('HGETALL', P .. ':counts'),
    tostring(oldest[2] or -1), tostring(now), ranks, in_use}
end
return redis.error_reply('unknown command ' .. tostring(cmd))
