-- Delete a lock whoever holds it (an operator's forced release). KEYS[1] lock key.
-- ARGV: index key prefix, path, release channel. Returns the removed record, or false.
-- Announced on the channel, so the holder's lost-lock watch hears of it at once.
local v, bad = decode_lock(redis.call('GET', KEYS[1]), clock())
if bad then return {'corrupt'} end
if not v then return false end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[1] .. v.sessionId, ARGV[2])
redis.pcall('PUBLISH', ARGV[3], KEYS[1])
changed(ARGV[3], string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[2]))
return encode_lock(v)
