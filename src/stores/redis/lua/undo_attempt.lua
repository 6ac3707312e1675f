-- Takes back what an acquire attempt did, if it did anything, for a caller that was told it
-- failed; else makes sure it never will. KEYS: the attempt's lock keys, then the session's index.
-- ARGV: nonce, sessionId, how long to remember a cancellation, release channel, then the paths.
-- Returns how many locks it took back.
local n = #KEYS - 1
local now = clock()
local undone = 0
for i = 1, n do
  local v = decode_lock(redis.call('GET', KEYS[i]), now)
  if v and v.sessionId == ARGV[2] and v.nonce == ARGV[1] then
    local holds = tonumber(v.holdCount) or 1
    if holds > 1 then
      v.holdCount = holds - 1
      v.nonce = nil
      redis.call('SET', KEYS[i], envelope(encode_lock(v), tonumber(v.expiresAt)), 'KEEPTTL')
    else
      redis.call('DEL', KEYS[i])
      redis.call('SREM', KEYS[n + 1], ARGV[4 + i])
      redis.pcall('PUBLISH', ARGV[4], KEYS[i])
    end
    undone = undone + 1
  end
end
if undone > 0 then changed(ARGV[4], string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[5])) end
if undone == 0 then redis.call('SET', CANCELLED .. ARGV[1], '1', 'PX', ARGV[3]) end
return undone
