-- Delete one lock if it is live and matches the filter. KEYS[1] lock key.
-- ARGV: sessionId or '', agentId or '', now, index key prefix (index key = prefix .. sessionId), path,
-- release channel. Announced on the channel: waiters and the holder's lost-lock watch listen.
local v = decode_lock(redis.call('GET', KEYS[1]), tonumber(ARGV[3]))
if not v then return 0 end
if (ARGV[1] ~= '' and v.sessionId ~= ARGV[1]) or (ARGV[2] ~= '' and v.agentId ~= ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[4] .. v.sessionId, ARGV[5])
redis.pcall('PUBLISH', ARGV[6], KEYS[1])
return 1
