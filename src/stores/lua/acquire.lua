-- All-or-nothing acquire of n paths for one session.
-- KEYS[1..n] lock keys, KEYS[n+1] fencing counter, KEYS[n+2] the session's index set.
-- ARGV: sessionId, agentId, now, ttl, then the n paths in KEYS order.
-- Returns {'ok', record...} | {'locked', path, holder} | {'corrupt', path}
local n = #KEYS - 2
local sid, aid = ARGV[1], ARGV[2]
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local mine = {}
for i = 1, n do
  local v, bad = decode_lock(redis.call('GET', KEYS[i]), now)
  if bad then return {'corrupt', ARGV[4 + i]} end
  if v and v.sessionId ~= sid then return {'locked', ARGV[4 + i], cjson.encode(v)} end
  mine[i] = v or false
end
local out = {'ok'}
local paths = {}
for i = 1, n do
  local v = mine[i]
  if v then
    v.holdCount = (tonumber(v.holdCount) or 1) + 1
    v.agentId = aid
  else
    v = {sessionId = sid, agentId = aid, path = ARGV[4 + i], timestamp = now,
         token = redis.call('INCR', KEYS[n + 1]), holdCount = 1}
  end
  v.expiresAt = now + ttl
  local enc = cjson.encode(v)
  redis.call('SET', KEYS[i], envelope(enc, now + ttl), 'PX', ttl)
  out[#out + 1] = enc
  paths[#paths + 1] = ARGV[4 + i]
end
redis.call('SADD', KEYS[n + 2], unpack(paths))
if redis.call('PTTL', KEYS[n + 2]) < ttl then redis.call('PEXPIRE', KEYS[n + 2], ttl) end
return out
