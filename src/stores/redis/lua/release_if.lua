-- Delete one lock if it is live and matches the filter. KEYS: the lock key, the index of the
-- session the caller read as its holder (in the lock's slot), the watching marker.
-- ARGV: sessionId or '', agentId or '', path, release channel, that session.
-- Returns 1 deleted, 0 not live or not matching, {'other', sessionId} when another session holds
-- it now. Announced on the channel: waiters and the holder's lost-lock watch listen.
local v = decode_lock(redis.call('GET', KEYS[1]), clock())
if not v then return 0 end
if (ARGV[1] ~= '' and v.sessionId ~= ARGV[1]) or (ARGV[2] ~= '' and v.agentId ~= ARGV[2]) then return 0 end
if v.sessionId ~= ARGV[5] then return {'other', v.sessionId} end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[3])
redis.pcall('PUBLISH', ARGV[4], KEYS[1])
changed(ARGV[4], string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[3]), KEYS[3])
return 1
