-- Delete a lock whoever holds it (an operator's forced release). KEYS: the lock key, the index
-- of the session the caller read as its holder (in the lock's slot), the watching marker.
-- ARGV: path, release channel, that session. Returns the removed record, false when nothing is
-- held, {'corrupt'}, or {'other', sessionId} when another session holds it now (the caller asks
-- again with that session's index). Announced on the channel, so the holder's lost-lock watch
-- hears of it at once.
local v, bad = decode_lock(redis.call('GET', KEYS[1]), clock())
if bad then return {'corrupt'} end
if not v then return false end
if v.sessionId ~= ARGV[3] then return {'other', v.sessionId} end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.pcall('PUBLISH', ARGV[2], KEYS[1])
changed(ARGV[2], string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1]), KEYS[3])
return encode_lock(v)
