-- Takes back what an acquire attempt did, if it did anything, for a caller that was told it
-- failed (or whose all-or-nothing acquire across slots failed in another slot); else makes sure
-- it never will. KEYS: for each of the attempt's paths its lock key and the session's index in
-- its slot, then the cancellation mark and the watching marker.
-- ARGV: nonce, sessionId, how long to remember a cancellation, release channel, the namespace's
-- key prefix, then the paths. Returns how many locks it took back.
local n = (#KEYS - 2) / 2
local now = clock()
local undone = 0
for i = 1, n do
  local lock, index = KEYS[2 * i - 1], KEYS[2 * i]
  local v = decode_lock(redis.call('GET', lock), now)
  if v and v.sessionId == ARGV[2] and v.nonce == ARGV[1] then
    local holds = tonumber(v.holdCount) or 1
    if holds > 1 then
      v.holdCount = holds - 1
      v.nonce = nil
      redis.call('SET', lock, envelope(encode_lock(v), tonumber(v.expiresAt)), 'KEEPTTL')
    else
      redis.call('DEL', lock)
      redis.call('SREM', index, ARGV[5 + i])
      redis.pcall('PUBLISH', ARGV[4], lock)
    end
    undone = undone + 1
  end
end
if undone > 0 then changed(ARGV[4], ARGV[5], KEYS[2 * n + 2]) end
if undone == 0 then redis.call('SET', KEYS[2 * n + 1], '1', 'PX', ARGV[3]) end
return undone
