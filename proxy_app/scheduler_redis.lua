-- Seadragon's shared queue and slots in Redis: one script, so every step is atomic.
-- Used by proxy_app/scheduler_redis.py, which documents the keys and the lease; the rules
-- (docs/contract.md §5, §7, §8) are those of proxy_app/scheduler.py, step for step.
--
-- ARGV[1] command, ARGV[2] key prefix, ARGV[3] config JSON {"backends": {url: slots},
--   "routes": {model: [url]}, "default": [url], "loaded": {url: [model]} (its /api/ps),
--   "capacity": {url: n} (the most models /api/ps listed at once), "fair": n,
--   "slack": n, "max_delay": s} (healthy backends only, in configured order), ARGV[4] lease
--   in ms, ARGV[5] the clock in seconds ('' = Redis TIME); the rest per command.
-- Keys are built from the prefix, so this runs on a single Redis (not a cluster).

local cmd, P = ARGV[1], ARGV[2]
local cfg = cjson.decode(ARGV[3])
local lease = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- A slot's lease outlives its owner's heartbeat (PX lease) by 1 ms, so when a crashed
-- instance's slots come back its waiting tickets are already known to be ownerless.
local lease_end = now + lease + 1
-- Aging, affinity delays and waits use this clock (tests pass a fake one).
local secs = tonumber(ARGV[5]) or (tonumber(clock[1]) + tonumber(clock[2]) / 1e6)

local function tkey(rid) return P .. ':t:' .. rid end
local function lane(model, who) return P .. ':lane:' .. model .. '\n' .. who end
local function num(v) return tonumber(v) or 0 end

local function split(text)
  local out = {}
  if not text then return out end
  for part in string.gmatch(text, '[^\n]+') do out[#out + 1] = part end
  return out
end

-- Limits count per subject (docs/contract.md §16: a shared key bounds all its end users);
-- ``limit`` / ``sactive`` / ``swaiting`` per subject, ``subj:<who>`` the subjects of a waiting
-- identity, ``members:<subject>`` the identities waiting under it.
local function blocked_by(subjects)
  for _, s in ipairs(subjects) do
    local limit = redis.call('HGET', P .. ':limit', s)
    if limit ~= false and num(redis.call('HGET', P .. ':sactive', s)) >= tonumber(limit) then return true end
  end
  return false
end

local function blocked(who)
  if who == '' then return false end
  return blocked_by(split(redis.call('GET', P .. ':subj:' .. who) or nil))
end

local function under(subjects)
  local seen, out = {}, {}
  for _, s in ipairs(subjects) do
    for _, w in ipairs(redis.call('HKEYS', P .. ':members:' .. s)) do
      if not seen[w] then seen[w] = true out[#out + 1] = w end
    end
  end
  return out
end

local function head(key)
  local h = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #h == 0 then return nil end
  return {h[1], tonumber(h[2])}
end

local function before(a, b)
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[1] < b[1]
end

local function ready_add(model, h)
  redis.call('ZADD', P .. ':ready:' .. model, string.format('%.17g', h[2]), h[1])
  redis.call('SADD', P .. ':models', model)
end

-- An identity reached or left its max_concurrent: move its lane heads out of / into ready.
local function toggle(who, was)
  local is = blocked(who)
  if is == was then return end
  for _, model in ipairs(redis.call('HKEYS', P .. ':wm:' .. who)) do
    local h = head(lane(model, who))
    if h then
      if is then redis.call('ZREM', P .. ':ready:' .. model, h[1]) else ready_add(model, h) end
    end
  end
end

-- Run ``change`` and move the lane heads of every identity waiting under ``subjects`` it (un)blocked.
local function rebalancing(subjects, change)
  local whos = under(subjects)
  local was = {}
  for i, w in ipairs(whos) do was[i] = blocked(w) end
  change()
  local freed = false
  for i, w in ipairs(whos) do
    toggle(w, was[i])
    if was[i] and not blocked(w) then freed = true end
  end
  return freed
end

local function holding(who, subjects, delta)
  if who ~= '' then
    if redis.call('HINCRBY', P .. ':active', who, delta) <= 0 then redis.call('HDEL', P .. ':active', who) end
  end
  rebalancing(subjects, function()
    for _, s in ipairs(subjects) do
      if redis.call('HINCRBY', P .. ':sactive', s, delta) <= 0 then redis.call('HDEL', P .. ':sactive', s) end
    end
  end)
end

-- limits: {{subject, max_queued, max_concurrent}} (-1 = none); true if that unblocked anyone.
local function set_limits(limits)
  local subjects = {}
  for i, l in ipairs(limits) do subjects[i] = l[1] end
  return rebalancing(subjects, function()
    for _, l in ipairs(limits) do
      if l[3] >= 0 then redis.call('HSET', P .. ':limit', l[1], l[3]) else redis.call('HDEL', P .. ':limit', l[1]) end
    end
  end)
end

local function queue_add(rid, member, score, model, who, source, subjects)
  local key = lane(model, who)
  local old = head(key)
  if who ~= '' then redis.call('SET', P .. ':subj:' .. who, table.concat(subjects, '\n')) end
  for _, s in ipairs(subjects) do
    redis.call('HINCRBY', P .. ':swaiting', s, 1)
    redis.call('HINCRBY', P .. ':members:' .. s, who, 1)
  end
  redis.call('ZADD', key, string.format('%.17g', score), member)
  if not blocked(who) and (old == nil or before({member, score}, old)) then
    if old then redis.call('ZREM', P .. ':ready:' .. model, old[1]) end
    ready_add(model, {member, score})
  end
  redis.call('ZADD', P .. ':queue', string.format('%.17g', score), member)
  redis.call('ZADD', P .. ':arrivals', now, rid)
  redis.call('HINCRBY', P .. ':counts', 'queued:' .. source, 1)
  redis.call('HINCRBY', P .. ':waiting', who, 1)
  redis.call('HINCRBY', P .. ':wm:' .. who, model, 1)
end

-- Take a waiting ticket out of every index (its hash stays; the caller decides).
local function unqueue(rid, member, model, who, source, subjects)
  local key = lane(model, who)
  local h = head(key)
  local was_blocked = blocked(who)
  redis.call('ZREM', key, member)
  for _, s in ipairs(subjects) do
    if redis.call('HINCRBY', P .. ':swaiting', s, -1) <= 0 then redis.call('HDEL', P .. ':swaiting', s) end
    if redis.call('HINCRBY', P .. ':members:' .. s, who, -1) <= 0 then
      redis.call('HDEL', P .. ':members:' .. s, who)
    end
  end
  if h and h[1] == member and not was_blocked then
    redis.call('ZREM', P .. ':ready:' .. model, member)
    local nh = head(key)
    if nh then ready_add(model, nh) end
  end
  redis.call('ZREM', P .. ':queue', member)
  redis.call('ZREM', P .. ':arrivals', rid)
  redis.call('HINCRBY', P .. ':counts', 'queued:' .. source, -1)
  if redis.call('HINCRBY', P .. ':waiting', who, -1) <= 0 then
    redis.call('HDEL', P .. ':waiting', who)
    redis.call('DEL', P .. ':subj:' .. who)
  end
  if redis.call('HINCRBY', P .. ':wm:' .. who, model, -1) <= 0 then redis.call('HDEL', P .. ':wm:' .. who, model) end
end

local FIELDS = {'member', 'model', 'who', 'source', 'state', 'owner', 'deadline', 'backend', 'subj'}
local function ticket(rid)
  local f = redis.call('HMGET', tkey(rid), unpack(FIELDS))
  return {member = f[1], model = f[2], who = f[3], source = f[4], state = f[5], owner = f[6],
    deadline = f[7], backend = f[8], subjects = split(f[9] or nil)}
end

-- A waiting ticket leaves for good.
local function drop(rid)
  local t = ticket(rid)
  if t.member and t.state == 'queued' then unqueue(rid, t.member, t.model, t.who, t.source, t.subjects) end
  redis.call('ZREM', P .. ':arrivals', rid)
  redis.call('DEL', tkey(rid))
end

-- Give back a held slot; the ZREM result makes a second release a no-op.
local function release(rid, url, held)
  if redis.call('ZREM', P .. ':leases:' .. url, rid) == 1 then
    local t = ticket(rid)
    redis.call('HINCRBY', P .. ':counts', 'active:' .. (t.source or 'unknown'), -1)
    holding(t.who or '', t.subjects, -1)
    if held and t.model and t.model ~= '' then
      local field = t.model .. '\n' .. url
      local old = tonumber(redis.call('HGET', P .. ':svc', field))
      redis.call('HSET', P .. ':svc', field, string.format('%.17g', old and old + 0.3 * (held - old) or held))
    end
  end
  redis.call('DEL', tkey(rid))
end

-- Leases nobody refreshed (a crashed instance) expire and free their slots.
local function purge_leases(url)
  for _, rid in ipairs(redis.call('ZRANGEBYSCORE', P .. ':leases:' .. url, '-inf', now)) do
    release(rid, url, nil)
  end
end

-- Models given to each backend, by every instance: a sorted set scored by a shared counter.
local RECENT_MODELS = 16 -- as in proxy_app/backends.py
local function given(url, model)
  if model == '' then return end
  local key = P .. ':recent:' .. url
  redis.call('ZADD', key, redis.call('INCR', P .. ':recent_seq'), model)
  redis.call('ZREMRANGEBYRANK', key, 0, -RECENT_MODELS - 1)
end

-- holds() in proxy_app/backends.py: among the ``capacity`` models given last, or listed
-- by /api/ps, never given, while fewer than ``capacity`` were given.
local function loaded(url, model)
  if model == '' then return false end
  local capacity = (cfg.capacity or {})[url] or 1
  local top = redis.call('ZREVRANGE', P .. ':recent:' .. url, 0, capacity - 1)
  for _, m in ipairs(top) do
    if m == model then return true end
  end
  if #top >= capacity or redis.call('ZSCORE', P .. ':recent:' .. url, model) then return false end
  for _, m in ipairs((cfg.loaded or {})[url] or {}) do
    if m == model then return true end
  end
  return false
end

local function routes(model) return cfg.routes[model] or cfg.default end

-- A free candidate backend for the model: one that has it loaded first, then the most free.
local function pick(free, model)
  local best, rank_l, rank_f = nil, false, 0
  for _, u in ipairs(routes(model)) do
    local f = free[u] or 0
    if f > 0 then
      local l = loaded(u, model)
      if best == nil or (l and not rank_l) or (l == rank_l and f > rank_f) then best, rank_l, rank_f = u, l, f end
    end
  end
  return best
end

local function serves(url, model)
  for _, u in ipairs(routes(model)) do if u == url then return true end end
  return false
end

local function free_slots()
  local free = {}
  for url, slots in pairs(cfg.backends) do
    purge_leases(url)
    free[url] = slots - redis.call('ZCARD', P .. ':leases:' .. url)
  end
  return free
end

-- Hand ``url`` to a waiting ticket (or drop it if its instance is gone or it timed out).
local function grant_waiting(rid, member, model, url, free)
  local t = ticket(rid)
  unqueue(rid, member, model, t.who, t.source, t.subjects)
  local alive = t.owner and redis.call('EXISTS', P .. ':inst:' .. t.owner) == 1
  if not (alive and tonumber(t.deadline) > now) then
    redis.call('DEL', tkey(rid))
    return
  end
  local waited = secs - tonumber(redis.call('HGET', tkey(rid), 'enq'))
  redis.call('ZADD', P .. ':leases:' .. url, lease_end, rid)
  redis.call('HSET', tkey(rid), 'state', 'granted', 'backend', url, 'waited', string.format('%.17g', waited))
  redis.call('HINCRBY', P .. ':counts', 'active:' .. t.source, 1)
  holding(t.who, t.subjects, 1)
  given(url, model)
  -- Always told, even the enqueuing caller that also gets the answer directly:
  -- if that caller was cancelled meanwhile, the notice is what gives the slot back.
  local inbox = P .. ':granted:' .. t.owner
  redis.call('RPUSH', inbox, 'g\n' .. url .. '\n' .. rid)
  redis.call('PEXPIRE', inbox, lease * 4)
  free[url] = free[url] - 1
end

-- The ticket that takes ``url``: ``nxt``, or one for a model loaded there within the slack.
local function affine(nxt, url)
  if cfg.slack <= 0 or cfg.max_delay <= 0 or nxt[3] == '' or loaded(url, nxt[3]) then return nxt end
  local rid = string.sub(nxt[1], 17)
  local passed = tonumber(redis.call('HGET', tkey(rid), 'passed'))
  if passed and secs - passed >= cfg.max_delay then return nxt end
  local best = nil
  for _, m in ipairs(redis.call('SMEMBERS', P .. ':models')) do
    local h = head(P .. ':ready:' .. m)
    if h and h[2] <= nxt[2] + cfg.slack and (best == nil or before(h, best)) and loaded(url, m)
        and serves(url, m) then
      best = {h[1], h[2], m}
    end
  end
  if best == nil then return nxt end
  if not passed then redis.call('HSET', tkey(rid), 'passed', string.format('%.17g', secs)) end
  return best
end

-- Grant free slots to the best eligible tickets whose model has a free backend.
local function dispatch()
  local free = free_slots()
  while true do
    local heads = {}
    for _, m in ipairs(redis.call('SMEMBERS', P .. ':models')) do
      local h = head(P .. ':ready:' .. m)
      if h then heads[#heads + 1] = {h[1], h[2], m} else redis.call('SREM', P .. ':models', m) end
    end
    table.sort(heads, before)
    local nxt, url
    for _, h in ipairs(heads) do
      url = pick(free, h[3])
      if url then nxt = h break end
    end
    if not nxt then return end
    local chosen = affine(nxt, url)
    grant_waiting(string.sub(chosen[1], 17), chosen[1], chosen[3], url, free)
  end
end

local function notify(owner, message)
  local inbox = P .. ':granted:' .. owner
  redis.call('RPUSH', inbox, message)
  redis.call('PEXPIRE', inbox, lease * 4)
end

if cmd == 'enqueue' then
  -- ARGV: 6 rid, 7 model group, 8 source, 9 base priority, 10 aging per minute, 11 owner,
  -- 12 timeout ms, 13 max queue, 14 who, 15 JSON [[subject, max_queued, max_concurrent]] (-1 = none),
  -- 16 unused, 17 endpoint
  local rid, model, source, owner, who = ARGV[6], ARGV[7], ARGV[8], ARGV[11], ARGV[14]
  if redis.call('EXISTS', tkey(rid)) == 1 then return {'duplicate'} end
  redis.call('SET', P .. ':inst:' .. owner, '1', 'PX', lease)
  local limits = cjson.decode(ARGV[15])
  local subjects = {}
  for i, l in ipairs(limits) do subjects[i] = l[1] end
  if set_limits(limits) then dispatch() end
  local mine = num(redis.call('HGET', P .. ':waiting', who)) + num(redis.call('HGET', P .. ':active', who))
  local points = 0
  if who ~= '' then points = cfg.fair * mine end
  local base = tonumber(ARGV[9])
  redis.call('HSET', tkey(rid), 'model', model, 'who', who, 'source', source, 'owner', owner,
    'deadline', now + tonumber(ARGV[12]), 'base', ARGV[9], 'points', string.format('%.17g', points),
    'enq', string.format('%.17g', secs), 'endpoint', ARGV[17], 'state', 'new',
    'subj', table.concat(subjects, '\n'))
  local free = free_slots()
  local url = nil
  if not blocked_by(subjects) then url = pick(free, model) end
  if url then
    redis.call('ZADD', P .. ':leases:' .. url, lease_end, rid)
    redis.call('HSET', tkey(rid), 'state', 'granted', 'backend', url, 'waited', '0')
    redis.call('HINCRBY', P .. ':counts', 'active:' .. source, 1)
    holding(who, subjects, 1)
    given(url, model)
    notify(owner, 'g\n' .. url .. '\n' .. rid)
    return {'granted', url, string.format('%.17g', points)}
  end
  for _, l in ipairs(limits) do
    local waiting = num(redis.call('HGET', P .. ':swaiting', l[1]))
    if l[2] >= 0 and waiting >= l[2] then
      redis.call('DEL', tkey(rid))
      return {'identity_full', waiting}
    end
  end
  local score = base + points + tonumber(ARGV[10]) * (secs / 60)
  if redis.call('ZCARD', P .. ':queue') >= tonumber(ARGV[13]) then
    local worst = redis.call('ZRANGE', P .. ':queue', -1, -1, 'WITHSCORES')
    if #worst == 0 or score >= tonumber(worst[2]) then
      redis.call('DEL', tkey(rid))
      return {'full'}
    end
    local victim = string.sub(worst[1], 17)
    local vowner = redis.call('HGET', tkey(victim), 'owner')
    drop(victim)
    if vowner then notify(vowner, 'e\n' .. victim) end
  end
  local member = string.format('%016d', redis.call('INCR', P .. ':seq')) .. rid
  redis.call('HSET', tkey(rid), 'member', member, 'state', 'queued')
  queue_add(rid, member, score, model, who, source, subjects)
  dispatch()
  local f = redis.call('HMGET', tkey(rid), 'state', 'backend')
  if f[1] == 'granted' then return {'granted', f[2], string.format('%.17g', points)} end
  return {'queued', member, redis.call('ZRANK', P .. ':queue', member), string.format('%.17g', points)}
elseif cmd == 'leave' then
  -- ARGV: 6 rid, 7 seconds the slot was held ('' when leaving the queue).
  local rid = ARGV[6]
  local t = ticket(rid)
  if t.state == 'granted' then
    release(rid, t.backend, tonumber(ARGV[7]))
  elseif t.state == 'queued' then
    drop(rid)
  end
  dispatch()
  return 'ok'
elseif cmd == 'cancel' then
  -- ARGV: 6 rid, 7 reason. The owner instance fails its waiter or signals its stream.
  local t = ticket(ARGV[6])
  if not t.owner or (t.state ~= 'queued' and t.state ~= 'granted') then return 0 end
  notify(t.owner, 'c\n' .. ARGV[6] .. '\n' .. ARGV[7])
  return 1
elseif cmd == 'view' then
  -- ARGV: 6 JSON [url] every configured backend. Waiting tickets in order, then active ones.
  local rows = {}
  local VIEW = {'who', 'source', 'model', 'endpoint', 'base', 'points', 'enq', 'waited', 'backend'}
  local function row(rid, state)
    local f = redis.call('HMGET', tkey(rid), unpack(VIEW))
    rows[#rows + 1] = {rid, state, f[1] or '', f[2] or '', f[3] or '', f[4] or '', f[5] or '0', f[6] or '0',
      f[7] or '0', f[8] or '0', f[9] or ''}
  end
  for _, member in ipairs(redis.call('ZRANGE', P .. ':queue', 0, -1)) do row(string.sub(member, 17), 'waiting') end
  for _, url in ipairs(cjson.decode(ARGV[6])) do
    for _, rid in ipairs(redis.call('ZRANGE', P .. ':leases:' .. url, 0, -1)) do row(rid, 'active') end
  end
  return {cjson.encode(rows), string.format('%.17g', secs)}
elseif cmd == 'tick' then
  -- ARGV: 6 owner, 7 timeout ms, 8 JSON [[url, rid]] held here, 9 JSON [member] whose rank
  -- is wanted, 10 JSON [url] every configured backend.
  redis.call('SET', P .. ':inst:' .. ARGV[6], '1', 'PX', lease)
  for _, held in ipairs(cjson.decode(ARGV[8])) do
    redis.call('ZADD', P .. ':leases:' .. held[1], 'XX', lease_end, held[2])
  end
  -- Owners time out their own tickets; this catches those whose owner is gone.
  local stale = now - tonumber(ARGV[7]) - 1000
  for _, rid in ipairs(redis.call('ZRANGEBYSCORE', P .. ':arrivals', '-inf', stale, 'LIMIT', 0, 1000)) do
    drop(rid)
  end
  local urls = cjson.decode(ARGV[10])
  for _, url in ipairs(urls) do purge_leases(url) end
  dispatch()
  local ranks = {}
  for i, member in ipairs(cjson.decode(ARGV[9])) do
    ranks[i] = redis.call('ZRANK', P .. ':queue', member) or -1
  end
  local in_use = {}
  for i, url in ipairs(urls) do in_use[i] = redis.call('ZCARD', P .. ':leases:' .. url) end
  local oldest = redis.call('ZRANGE', P .. ':arrivals', 0, 0, 'WITHSCORES')
  return {redis.call('ZCARD', P .. ':queue'), redis.call('HGETALL', P .. ':counts'),
    tostring(oldest[2] or -1), tostring(now), ranks, in_use, redis.call('HGETALL', P .. ':svc')}
end
return redis.error_reply('unknown command ' .. tostring(cmd))
