-- All-or-nothing acquire of n paths for one session, fair to queued waiters (src/core/wait.rs),
-- claims included: a path ending in '/' locks its folder and everything below it. Every key it
-- touches is in KEYS; on a Cluster all of them share one hash slot (keys.rs), and an acquire of
-- paths in several slots runs once per slot (store.rs).
-- KEYS: for each path i, six: its lock key, its queue (sorted set), its queue's info (hash), the
--       fencing counter, the session's index set and the ticket counter of its slot; then six:
--       this attempt's cancellation mark, the claim set, the waits hash, the epoch marker, the
--       recovering flag, the watching marker.
-- ARGV: sessionId, agentId, ttl, waiterId ('' = do not wait), ticket (0 = not queued yet),
--       lease, attempt nonce, the namespace's key prefix, the release channel, '1' on a Cluster
--       (no claims, deadlock detection or restart grace there), the holder's description (a JSON
--       object of one-line texts written into the record, or ''), then the n paths, then for
--       each path its new record as JSON without its closing brace and without the three fields
--       only the server knows (timestamp, token, expiresAt), made by the client.
-- Returns {'granted', now, token...} (the usual grant: each record is the client's with those
--       three fields) | {'ok', record...} | {'locked'|'queued', path, holder, retryInMs, ticket, now}
--       | {'deadlock', path, holder, cycle, released} | {'corrupt', path} | {'cancelled'}
--       | {'recovering', retryInMs}
local n = (#KEYS - 6) / 6
local G = 6 * n
local CANCEL, CLAIM_SET, WAIT_HASH = KEYS[G + 1], KEYS[G + 2], KEYS[G + 3]
local EPOCH_KEY, RECOVERING_KEY, WATCHING_KEY = KEYS[G + 4], KEYS[G + 5], KEYS[G + 6]
local sid, aid = ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[3])
local wid, ticket, lease = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local nonce, prefix, channel, cluster = ARGV[7], ARGV[8], ARGV[9], ARGV[10] == '1'
local info = ARGV[11]
local function path(i) return ARGV[11 + i] end
local function key(i, j) return KEYS[6 * (i - 1) + j] end -- j: 1 lock, 2 queue, 3 queue info, 4 fence, 5 index, 6 ticket
local wants_claim = false
for i = 1, n do
  if is_claim(path(i)) then wants_claim = true end
end

-- One look at the keys that decide whether this is the usual acquire: the epoch marker (always
-- there, unless the server lost its data) and the keys almost never there (this attempt's
-- cancellation, a claim in the namespace, someone watching, a recovery under way, a queue for
-- one of the paths). EXISTS counts the marker five times: 5 means the marker and none of the
-- others. The lock keys are in it too: a held path is not the usual acquire, and a lock key of
-- another type (MGET would read it as nil) must reach GET's WRONGTYPE, not be overwritten.
-- (A Cluster has no marker.)
local probe = cluster and {CANCEL} or {EPOCH_KEY, EPOCH_KEY, EPOCH_KEY, EPOCH_KEY, EPOCH_KEY, CANCEL, CLAIM_SET, WATCHING_KEY, RECOVERING_KEY}
for i = 1, n do
  probe[#probe + 1] = key(i, 1)
  probe[#probe + 1] = key(i, 2)
end
local quiet = redis.call('EXISTS', unpack(probe)) == (cluster and 0 or 5)

-- The usual acquire, and the cheap one: nothing rare, nobody queued, no claim, paths free. The
-- records are the client's with the server's time and tokens; nothing is decoded or encoded.
-- (Every table and call here costs: this is most of what a lock costs the server.)
if quiet and ticket == 0 and not wants_claim then
  local found
  if n == 1 then
    found = {redis.call('GET', KEYS[4])}
  else
    local mget = {}
    for i = 1, n do mget[i] = key(i, 4) end
    found = redis.call('MGET', unpack(mget))
  end
  do
    local t = redis.call('TIME')
    local s, us = tonumber(t[1]), tonumber(t[2])
    local now, now_us = s * 1000 + math.floor(us / 1000), s * 1000000 + us
    local expires = string.format('%d', now + ttl)
    local stamp = string.format(',"timestamp":%d,"token":', now)
    local tail = ',"expiresAt":' .. expires .. '},"x":' .. expires .. '}'
    local out = {'granted', string.format('%d', now)}
    -- a new token: above the slot's counter and never behind the clock (microseconds), so a
    -- counter lost in a restart still hands out tokens above every earlier one
    local fences = {}
    for i = 1, n do
      local fk = key(i, 4)
      local token = string.format('%d', math.max((fences[fk] or tonumber(found[i]) or 0) + 1, now_us))
      fences[fk] = tonumber(token)
      redis.call('SET', key(i, 1), '{"v":' .. ARGV[11 + n + i] .. stamp .. token .. tail, 'PX', ttl)
      out[i + 2] = token
    end
    for fk, token in pairs(fences) do redis.call('SET', fk, string.format('%d', token)) end
    -- the session's index names the paths, for releaseAllLocks; it outlives them: kept between
    -- one and two TTLs, so most grants need not push it out
    for i = 1, n do
      local idx = key(i, 5)
      redis.call('SADD', idx, path(i))
      if redis.call('PTTL', idx) < ttl then redis.call('PEXPIRE', idx, 2 * ttl) end
    end
    return out
  end
end

local now, now_us = clock()
local rare = false
if not quiet then
  -- which of the rare keys it was (a queue alone is not rare: `ahead` looks at it)
  if cluster then
    rare = redis.call('EXISTS', CANCEL) > 0
  else
    rare = redis.call('EXISTS', EPOCH_KEY, EPOCH_KEY, EPOCH_KEY, EPOCH_KEY, EPOCH_KEY, CANCEL, CLAIM_SET, WATCHING_KEY, RECOVERING_KEY) ~= 5
  end
end
if rare then
  if redis.call('EXISTS', CANCEL) == 1 then return {'cancelled'} end
  local grace = not cluster and recovering(EPOCH_KEY, RECOVERING_KEY)
  if grace then return {'recovering', tostring(grace)} end
end

-- The first live waiter of another session ahead of this one in path i's queue (dead ones go),
-- passing over waiters that wait for this very session (making it wait for them would deadlock).
local function ahead(i)
  local qz, qh = key(i, 2), key(i, 3)
  if quiet or redis.call('EXISTS', qz) == 0 then return nil end
  local q = redis.call('ZRANGE', qz, 0, -1, 'WITHSCORES')
  for j = 1, #q, 2 do
    local id, t = q[j], tonumber(q[j + 1])
    if ticket > 0 and t >= ticket then return nil end
    local ok, w = pcall(cjson.decode, redis.call('HGET', qh, id) or '')
    if not ok or type(w) ~= 'table' or (tonumber(w.x) or 0) <= now then
      redis.call('ZREM', qz, id)
      redis.call('HDEL', qh, id)
    elseif w.s ~= sid and w.b ~= sid then
      return w
    end
  end
  return nil
end

-- The claim and deadlock helpers (one server only: they name lock keys of other paths), made
-- only when an acquire may need them (a claim in the namespace, a claim asked for, a waiting
-- acquire): the usual acquire does not even make the closure that makes them.
local H
local helpers
if not cluster and (rare or wants_claim or wid ~= '') then helpers = function()
  if H then return H end
  H = {}
  local claims
  local match = string.gsub(prefix, '([%*%?%[%]\\])', '\\%1')
  local function overlaps(a, b)
    return a == b or (is_claim(b) and string.sub(a, 1, #b) == b) or (is_claim(a) and string.sub(b, 1, #a) == a)
  end

  -- The live lock of path p of this namespace, with its path filled in for old records.
  function H.lock_at(p)
    local v = decode_lock(redis.call('GET', prefix .. p), now)
    if v and (v.path == nil or v.path == '') then v.path = p end
    return v
  end

  -- The live waits of this namespace, by session (dead ones go), other than this waiter's.
  local by_session
  function H.waits_by_session()
    if by_session then return by_session end
    by_session = {}
    if redis.call('EXISTS', WAIT_HASH) == 0 then return by_session end
    local all = redis.call('HGETALL', WAIT_HASH)
    for j = 1, #all, 2 do
      local ok, w = pcall(cjson.decode, all[j + 1])
      if not ok or type(w) ~= 'table' or (tonumber(w.x) or 0) <= now then
        redis.call('HDEL', WAIT_HASH, all[j])
      elseif all[j] ~= wid then
        w.id = all[j]
        by_session[w.s] = by_session[w.s] or {}
        table.insert(by_session[w.s], w)
      end
    end
    return by_session
  end

  -- The claim set, read once and only when it exists.
  function H.claim_set()
    if claims == nil then
      claims = false
      if redis.call('EXISTS', CLAIM_SET) == 1 then
        claims = {}
        for _, c in ipairs(redis.call('SMEMBERS', CLAIM_SET)) do claims[c] = true end
      end
    end
    return claims
  end

  -- Calls f(folder) for each folder above p that may be claimed, outermost first.
  function H.each_claim_above(p, f)
    local set = H.claim_set()
    if not set then return nil end
    local body = is_claim(p) and string.sub(p, 1, -2) or p
    local at = 0
    while true do
      local s = string.find(body, '/', at + 1, true)
      if not s then return nil end
      local folder = string.sub(p, 1, s)
      if set[folder] then
        local r = f(folder)
        if r then return r end
      end
      at = s
    end
  end

  -- Calls f(path, lock) for each live lock below the claim p (not at p itself).
  function H.each_lock_below(p, f)
    local pattern = match .. string.gsub(p, '([%*%?%[%]\\])', '\\%1') .. '*'
    local own = prefix .. p
    local cursor = '0'
    repeat
      local r = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = r[1]
      for _, k in ipairs(r[2]) do
        if k ~= own then
          local below = string.sub(k, #prefix + 1)
          local v = H.lock_at(below)
          if v then
            local found = f(below, v)
            if found then return found end
          end
        end
      end
    until cursor == '0'
    return nil
  end

  -- Whether a live waiter of any session asks for `folder` (a claim someone waits for).
  local function waited_for(folder)
    for _, list in pairs(H.waits_by_session()) do
      for _, x in ipairs(list) do
        for _, r in ipairs(x.r or {}) do
          if r == folder then return true end
        end
      end
    end
    return false
  end

  -- A live lock of another session that overlaps p without being at p.
  function H.other_overlapping(p)
    local v = H.each_claim_above(p, function(folder)
      local c = H.lock_at(folder)
      if c and c.sessionId ~= sid then return c end
      if not c and not waited_for(folder) then
        redis.call('SREM', CLAIM_SET, folder) -- stale: nobody holds it or waits for it
        claims[folder] = nil
      end
      return nil
    end)
    if v or not is_claim(p) then return v end
    return H.each_lock_below(p, function(_, l) if l.sessionId ~= sid then return l end end)
  end

  -- The first waiter of another session, ahead of this one, for a path overlapping p but not p:
  -- a claim above it, or (for a claim) a path below it.
  function H.waiter_overlapping(p)
    local first
    for _, list in pairs(H.waits_by_session()) do
      for _, x in ipairs(list) do
        if x.s ~= sid and x.b ~= sid and (ticket == 0 or (tonumber(x.q) or 0) < ticket) and (not first or (tonumber(x.q) or 0) < (tonumber(first.q) or 0)) then
          for _, r in ipairs(x.r or {}) do
            if r ~= p and overlaps(r, p) then
              first = x
              first.p = r
              break
            end
          end
        end
      end
    end
    return first
  end

  -- Would this wait close a cycle of waits back to this session? The waits from the blocker on,
  -- each still current: its blocker still holds the path, or waits for it ahead of it (a lower
  -- ticket). A blocker that queued for the path again behind the waiter blocks it no more.
  function H.find_cycle(blocker)
    local by = H.waits_by_session()
    local function current(w)
      if w.b == nil or w.b == '' then return false end
      local v = H.lock_at(w.p)
      if v and v.sessionId == w.b then return true end
      local q = tonumber(w.q) or 0
      for _, x in ipairs(by[w.b] or {}) do
        if (tonumber(x.q) or 0) < q then
          for _, r in ipairs(x.r or {}) do
            if overlaps(r, w.p) then return true end
          end
        end
      end
      return false
    end
    local via = {[blocker] = false}
    local frontier = {blocker}
    while #frontier > 0 do
      local nxt = {}
      for _, s in ipairs(frontier) do
        for _, w in ipairs(by[s] or {}) do
          if (w.b == sid or via[w.b] == nil) and current(w) then
            if w.b == sid then
              local chain = {w}
              local at = via[s]
              while at do
                table.insert(chain, 1, at)
                at = via[at.s]
              end
              return chain
            end
            via[w.b] = w
            table.insert(nxt, w.b)
          end
        end
      end
      frontier = nxt
    end
    return nil
  end

  -- Lets go of this session's locks that overlap p (the deadlock's way out). (Their session
  -- index entries stay until the index expires: an index only names candidates.)
  function H.let_go(p, freed)
    local function drop(at, v)
      if v and v.sessionId == sid and not freed[at] then
        freed[at] = true
        redis.call('DEL', prefix .. at)
        redis.pcall('PUBLISH', channel, prefix .. at)
      end
    end
    drop(p, H.lock_at(p))
    H.each_claim_above(p, function(folder) drop(folder, H.lock_at(folder)) end)
    if is_claim(p) then H.each_lock_below(p, function(below, v) drop(below, v) end) end
  end
  return H
end end

if cluster and wants_claim then
  return {'noclaims'}
end

local mine = {}
local blocked
for i = 1, n do
  local v, bad = decode_lock(redis.call('GET', key(i, 1)), now)
  if bad then return {'corrupt', path(i)} end
  if v and v.sessionId ~= sid then
    local left = math.max(0, (tonumber(v.expiresAt) or 0) - now)
    if v.path == nil or v.path == '' then v.path = path(i) end
    blocked = {'locked', path(i), encode_lock(v), tostring(left), v.sessionId, v.path}
    break
  end
  local o = helpers and (rare or is_claim(path(i))) and helpers().other_overlapping(path(i))
  if o then
    blocked = {'locked', path(i), encode_lock(o), tostring(math.max(0, (tonumber(o.expiresAt) or 0) - now)), o.sessionId, o.path}
    break
  end
  mine[i] = v or false
end
if not blocked then
  for i = 1, n do
    if not mine[i] then
      local w = ahead(i)
      local at = path(i)
      if not w and helpers and (rare or is_claim(path(i))) then
        w = helpers().waiter_overlapping(path(i))
        if w then at = w.p end
      end
      if w then
        local holder = cjson.encode({sessionId = w.s, agentId = w.a, path = at, queued = true})
        -- look again when its lease would run out
        blocked = {'queued', path(i), holder, tostring(math.max(0, w.x - now)), w.s, at}
        break
      end
    end
  end
end

if blocked then
  if wid ~= '' then
    if helpers and blocked[5] and blocked[5] ~= '' then
      local cycle = helpers().find_cycle(blocked[5])
      if cycle then
        -- the wait just before this one in the cycle goes on: what it waits for of ours is let go
        local freed, released = {}, {}
        for _, r in ipairs(cycle[#cycle].r or {}) do H.let_go(r, freed) end
        for at in pairs(freed) do table.insert(released, at) end
        local steps = {}
        for _, w in ipairs(cycle) do
          table.insert(steps, {sessionId = w.s, agentId = w.a, waitsFor = w.p, heldBy = w.b})
        end
        for i = 1, n do
          redis.call('ZREM', key(i, 2), wid)
          redis.call('HDEL', key(i, 3), wid)
        end
        redis.call('HDEL', WAIT_HASH, wid)
        changed(channel, prefix, WATCHING_KEY)
        return {'deadlock', blocked[2], blocked[3], cjson.encode(steps), cjson.encode(released)}
      end
    end
    local first = ticket == 0
    -- tickets follow the server's clock (microseconds) above each slot's counter, so tickets of
    -- different slots (a Cluster's) compare in arrival order too
    if ticket == 0 then
      ticket = math.max(redis.call('INCR', key(1, 6)), now_us)
    end
    for i = 1, n do
      if ticket > (tonumber(redis.call('GET', key(i, 6))) or 0) then
        redis.call('SET', key(i, 6), string.format('%d', ticket)) -- newcomers queue behind
      end
    end
    local info = cjson.encode({s = sid, a = aid, b = blocked[5], x = now + lease})
    local requested = {}
    for i = 1, n do
      redis.call('ZADD', key(i, 2), ticket, wid)
      redis.call('HSET', key(i, 3), wid, info)
      redis.call('PEXPIRE', key(i, 2), lease)
      redis.call('PEXPIRE', key(i, 3), lease)
      requested[i] = path(i)
      -- a claim someone waits for: files below it queue behind
      if is_claim(path(i)) then
        redis.call('SADD', CLAIM_SET, path(i))
        if redis.call('PTTL', CLAIM_SET) < lease then redis.call('PEXPIRE', CLAIM_SET, lease) end
      end
    end
    local ok, old = pcall(cjson.decode, redis.call('HGET', WAIT_HASH, wid) or '')
    local since = (ok and type(old) == 'table' and tonumber(old.q) == ticket and tonumber(old.t)) or now
    -- the ticket as text: cjson writes numbers with 14 significant digits, tickets have 16
    redis.call('HSET', WAIT_HASH, wid, cjson.encode({s = sid, a = aid, b = blocked[5], p = blocked[6], r = requested, q = string.format('%d', ticket), t = since, x = now + lease}))
    if redis.call('PTTL', WAIT_HASH) < lease then redis.call('PEXPIRE', WAIT_HASH, lease) end
    if first then changed(channel, prefix, WATCHING_KEY) end
  end
  blocked[5] = string.format('%d', ticket)
  blocked[6] = tostring(now)
  return blocked
end

local out = {'ok'}
for i = 1, n do
  local v = mine[i]
  if v then
    v.holdCount = (tonumber(v.holdCount) or 1) + 1
    v.agentId = aid
    -- never shorter: another call of this session may still rely on the longer expiry
    v.expiresAt = math.max(tonumber(v.expiresAt) or 0, now + ttl)
  else
    v = {sessionId = sid, agentId = aid, path = path(i), timestamp = now,
         token = next_token(key(i, 4), now_us), holdCount = 1, expiresAt = now + ttl}
  end
  if info ~= '' then
    for k, x in pairs(cjson.decode(info)) do v[k] = x end
  end
  -- which attempt wrote it last: a client that lost the answer asks (resolve_attempt.lua)
  v.nonce = nonce
  local enc = encode_lock(v)
  local px = v.expiresAt - now
  redis.call('SET', key(i, 1), envelope(enc, v.expiresAt), 'PX', px)
  out[#out + 1] = enc
  if is_claim(path(i)) then
    redis.call('SADD', CLAIM_SET, path(i))
    if redis.call('PTTL', CLAIM_SET) < px then redis.call('PEXPIRE', CLAIM_SET, px) end
  end
  if wid ~= '' and ticket > 0 then
    redis.call('ZREM', key(i, 2), wid)
    redis.call('HDEL', key(i, 3), wid)
  end
  -- the session's index in this path's slot names it, for releaseAllLocks
  redis.call('SADD', key(i, 5), path(i))
  if redis.call('PTTL', key(i, 5)) < px then redis.call('PEXPIRE', key(i, 5), px) end
end
if wid ~= '' and ticket > 0 then redis.call('HDEL', WAIT_HASH, wid) end
if rare then changed(channel, prefix, WATCHING_KEY) end
return out
