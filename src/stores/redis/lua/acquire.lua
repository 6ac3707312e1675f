-- All-or-nothing acquire of n paths for one session, fair to queued waiters (src/core/wait.rs).
-- KEYS: 1..n lock keys, n+1 fencing counter, n+2 the session's index set, n+3 the ticket counter.
-- ARGV: sessionId, agentId, ttl, waiterId ('' = do not wait), ticket (0 = not queued yet),
--       lease, attempt nonce, then the n paths in KEYS order.
-- Returns {'ok', record...} | {'locked'|'queued', path, holder, retryInMs, ticket, now}
--       | {'corrupt', path} | {'cancelled'} | {'recovering', retryInMs}
local n = #KEYS - 3
local sid, aid = ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[3])
local wid, ticket, lease = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local nonce = ARGV[7]
local function path(i) return ARGV[7 + i] end
local function qz(i) return QUEUE .. KEYS[i] end
local function qh(i) return QUEUE_INFO .. KEYS[i] end
local now, now_us = clock()
if redis.call('EXISTS', CANCELLED .. nonce) == 1 then return {'cancelled'} end
local grace = recovering()
if grace then return {'recovering', tostring(grace)} end

-- The first live waiter of another session ahead of this one in path i's queue (dead ones go),
-- passing over waiters that wait for this very session (making it wait for them would deadlock).
local function ahead(i)
  if redis.call('EXISTS', qz(i)) == 0 then return nil end
  local q = redis.call('ZRANGE', qz(i), 0, -1, 'WITHSCORES')
  for j = 1, #q, 2 do
    local id, t = q[j], tonumber(q[j + 1])
    if ticket > 0 and t >= ticket then return nil end
    local ok, w = pcall(cjson.decode, redis.call('HGET', qh(i), id) or '')
    if not ok or type(w) ~= 'table' or (tonumber(w.x) or 0) <= now then
      redis.call('ZREM', qz(i), id)
      redis.call('HDEL', qh(i), id)
    elseif w.s ~= sid and w.b ~= sid then
      return w
    end
  end
  return nil
end

local mine = {}
local blocked
for i = 1, n do
  local v, bad = decode_lock(redis.call('GET', KEYS[i]), now)
  if bad then return {'corrupt', path(i)} end
  if v and v.sessionId ~= sid then
    local left = math.max(0, (tonumber(v.expiresAt) or 0) - now)
    blocked = {'locked', path(i), encode_lock(v), tostring(left), v.sessionId}
    break
  end
  mine[i] = v or false
end
if not blocked then
  for i = 1, n do
    if not mine[i] then
      local w = ahead(i)
      if w then
        local holder = cjson.encode({sessionId = w.s, agentId = w.a, path = path(i), queued = true})
        -- look again when its lease would run out
        blocked = {'queued', path(i), holder, tostring(math.max(0, w.x - now)), w.s}
        break
      end
    end
  end
end
if blocked then
  if wid ~= '' then
    if ticket == 0 then
      ticket = redis.call('INCR', KEYS[n + 3])
    elseif ticket > (tonumber(redis.call('GET', KEYS[n + 3])) or 0) then
      -- the counter was lost (a restart without persistence): newcomers must still queue behind
      redis.call('SET', KEYS[n + 3], ticket)
    end
    local info = cjson.encode({s = sid, a = aid, b = blocked[5], x = now + lease})
    for i = 1, n do
      redis.call('ZADD', qz(i), ticket, wid)
      redis.call('HSET', qh(i), wid, info)
      redis.call('PEXPIRE', qz(i), lease)
      redis.call('PEXPIRE', qh(i), lease)
    end
  end
  blocked[5] = tostring(ticket)
  blocked[6] = tostring(now)
  return blocked
end

local out = {'ok'}
local paths = {}
local longest = ttl
for i = 1, n do
  local v = mine[i]
  if v then
    v.holdCount = (tonumber(v.holdCount) or 1) + 1
    v.agentId = aid
    -- never shorter: another call of this session may still rely on the longer expiry
    v.expiresAt = math.max(tonumber(v.expiresAt) or 0, now + ttl)
  else
    v = {sessionId = sid, agentId = aid, path = path(i), timestamp = now,
         token = next_token(KEYS[n + 1], now_us), holdCount = 1, expiresAt = now + ttl}
  end
  -- which attempt wrote it last: a client that lost the answer asks (resolve_attempt.lua)
  v.nonce = nonce
  local enc = encode_lock(v)
  local px = v.expiresAt - now
  if px > longest then longest = px end
  redis.call('SET', KEYS[i], envelope(enc, v.expiresAt), 'PX', px)
  out[#out + 1] = enc
  paths[#paths + 1] = path(i)
  if wid ~= '' and ticket > 0 then
    redis.call('ZREM', qz(i), wid)
    redis.call('HDEL', qh(i), wid)
  end
end
redis.call('SADD', KEYS[n + 2], unpack(paths))
if redis.call('PTTL', KEYS[n + 2]) < longest then redis.call('PEXPIRE', KEYS[n + 2], longest) end
return out
