-- An acquire whose answer never came (a timeout, a dropped connection): did it take effect?
-- KEYS: the attempt's lock keys, then its cancellation mark. ARGV: nonce, sessionId, how long to
-- remember a cancellation. Returns {'applied', record...} (the caller holds the locks) or
-- {'cancelled'} (it never will: the attempt, if it runs late, finds the mark and grants nothing).
local n = #KEYS - 1
local now = clock()
local v = decode_lock(redis.call('GET', KEYS[1]), now)
if v and v.sessionId == ARGV[2] and v.nonce == ARGV[1] then
  local out = {'applied'}
  for i = 1, n do
    local r = decode_lock(redis.call('GET', KEYS[i]), now)
    if r then out[#out + 1] = encode_lock(r) end
  end
  return out
end
redis.call('SET', KEYS[n + 1], '1', 'PX', ARGV[3])
return {'cancelled'}
