-- Delete one lock if it is live and matches the filter. KEYS[1] lock key.
-- ARGV: sessionId or '', agentId or '', index key prefix (index key = prefix .. sessionId), path,
-- release channel. Announced on the channel: waiters and the holder's lost-lock watch listen.
local v = decode_lock(redis.call('GET', KEYS[1]), clock())
if not v then return 0 end
if (ARGV[1] ~= '' and v.sessionId ~= ARGV[1]) or (ARGV[2] ~= '' and v.agentId ~= ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[3] .. v.sessionId, ARGV[4])
redis.pcall('PUBLISH', ARGV[5], KEYS[1])
changed(ARGV[5], string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[4]))
return 1
