-- Undo one hold of a session. KEYS[1] lock key, KEYS[2] the session's index set.
-- ARGV: sessionId, path, release channel.
-- Returns 1 released, 0 not held, -1 corrupt record. A last release wakes the queue's waiters.
local now = clock()
local v, bad = decode_lock(redis.call('GET', KEYS[1]), now)
if bad then return -1 end
if not v or v.sessionId ~= ARGV[1] then return 0 end
local holds = tonumber(v.holdCount) or 1
if holds > 1 then
  v.holdCount = holds - 1
  redis.call('SET', KEYS[1], envelope(encode_lock(v), tonumber(v.expiresAt)), 'KEEPTTL')
else
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  if redis.call('EXISTS', QUEUE .. KEYS[1]) == 1 then redis.pcall('PUBLISH', ARGV[3], KEYS[1]) end
end
return 1
