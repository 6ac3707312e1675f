-- Undo one hold of a session. KEYS: the lock key, the session's index in its slot, its queue, the
-- waits hash, the watching marker. ARGV: sessionId, path, release channel.
-- Returns 1 released, 0 not held, -1 corrupt record. A last release wakes whoever waits for the
-- path or for something overlapping it (a claim above it, a file below a claim).
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
  -- one look for the usual case: nobody waits in the namespace, nobody watches
  if redis.call('EXISTS', KEYS[3], KEYS[4], KEYS[5]) > 0 then
    if redis.call('EXISTS', KEYS[3], KEYS[4]) > 0 then redis.pcall('PUBLISH', ARGV[3], KEYS[1]) end
    changed(ARGV[3], string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[2]), KEYS[5])
  end
end
return 1
