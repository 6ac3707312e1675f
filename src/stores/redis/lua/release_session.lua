-- Delete every live lock a session holds in one slot (whatever the hold count), optionally only
-- an agent's. KEYS: the session's index in that slot, the lock keys of its members (read by the
-- caller just before), the watching marker. ARGV: the namespace's key prefix, sessionId, agentId
-- or '', release channel, then the paths of those lock keys. Each deleted lock is announced.
local n = #KEYS - 2
local now = clock()
local released = 0
for i = 1, n do
  local path, key = ARGV[4 + i], KEYS[1 + i]
  local v = decode_lock(redis.call('GET', key), now)
  if v and v.sessionId == ARGV[2] and (ARGV[3] == '' or v.agentId == ARGV[3]) then
    redis.call('DEL', key)
    redis.call('SREM', KEYS[1], path)
    redis.pcall('PUBLISH', ARGV[4], key)
    released = released + 1
  elseif not v or v.sessionId ~= ARGV[2] then
    redis.call('SREM', KEYS[1], path)
  end
end
if released > 0 then changed(ARGV[4], ARGV[1], KEYS[n + 2]) end
return released
