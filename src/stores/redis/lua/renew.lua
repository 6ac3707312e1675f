-- Push out the expiry of a live lock held by the session (never in). KEYS: the lock key, the
-- session's index in its slot, the epoch marker, the recovering flag. ARGV: sessionId, ttl, '1' on
-- a Cluster (no epoch marker there). Returns the record, false when not held, {'corrupt'}, or
-- {'recovering'} when the server lost its data and its holders are putting their locks back.
local now = clock()
local ttl = tonumber(ARGV[2])
local v, bad = decode_lock(redis.call('GET', KEYS[1]), now)
if bad then return {'corrupt'} end
if not v and ARGV[3] ~= '1' and recovering(KEYS[3], KEYS[4]) then return {'recovering'} end
if not v or v.sessionId ~= ARGV[1] then return false end
v.expiresAt = math.max(tonumber(v.expiresAt) or 0, now + ttl)
local enc = encode_lock(v)
local px = v.expiresAt - now
redis.call('SET', KEYS[1], envelope(enc, v.expiresAt), 'PX', px)
if redis.call('PTTL', KEYS[2]) < px then redis.call('PEXPIRE', KEYS[2], px) end
return enc
