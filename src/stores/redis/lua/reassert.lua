-- Puts back a lock this process holds, after the server lost it (a restart without persistence,
-- a failover to a replica that had not received it) or after the hybrid's outage.
-- KEYS[1] lock key, KEYS[2] the session's index in its slot, KEYS[3] the slot's fencing counter,
-- KEYS[4] the namespace's claim set.
-- ARGV: the record (JSON), how long it has left (ms, by the holder's count), sessionId, token, path.
-- Returns {'kept'} | {'restored'} | {'expired'} | {'conflict', holder, holder's PTTL}.
local now = clock()
raise_fence(KEYS[3], tonumber(ARGV[4]))
local cur, bad = decode_lock(redis.call('GET', KEYS[1]), now)
if bad then return {'conflict', 'null', '0'} end
if cur then
  if cur.sessionId == ARGV[3] then return {'kept'} end
  return {'conflict', encode_lock(cur), tostring(redis.call('PTTL', KEYS[1]))}
end
local left = tonumber(ARGV[2])
if left <= 0 then return {'expired'} end
local v = cjson.decode(ARGV[1])
v.token = tonumber(ARGV[4])
v.expiresAt = now + left
redis.call('SET', KEYS[1], envelope(encode_lock(v), v.expiresAt), 'PX', left)
redis.call('SADD', KEYS[2], ARGV[5])
note_claim(KEYS[4], ARGV[5], left)
if redis.call('PTTL', KEYS[2]) < left then redis.call('PEXPIRE', KEYS[2], left) end
return {'restored'}
