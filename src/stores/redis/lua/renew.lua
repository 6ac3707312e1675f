-- Push out the expiry of a live lock held by the session. KEYS[1] lock key, KEYS[2] index set.
-- ARGV: sessionId, now, ttl. Returns the record, false when not held, or {'corrupt'}.
local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local v, bad = decode_lock(redis.call('GET', KEYS[1]), now)
if bad then return {'corrupt'} end
if not v or v.sessionId ~= ARGV[1] then return false end
v.expiresAt = now + ttl
local enc = cjson.encode(v)
redis.call('SET', KEYS[1], envelope(enc, now + ttl), 'PX', ttl)
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return enc
