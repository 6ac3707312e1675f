-- Delete every live lock a session holds (whatever the hold count), optionally only an agent's.
-- KEYS[1] the session's index set. ARGV: key prefix of the namespace, sessionId, agentId or '',
-- release channel. Each deleted lock is announced on the channel.
-- Touches keys named in the index (not in KEYS): fine on one Redis server, not on Cluster.
local now = clock()
local released = 0
for _, path in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. path
  local v = decode_lock(redis.call('GET', key), now)
  if v and v.sessionId == ARGV[2] and (ARGV[3] == '' or v.agentId == ARGV[3]) then
    redis.call('DEL', key)
    redis.call('SREM', KEYS[1], path)
    redis.pcall('PUBLISH', ARGV[4], key)
    released = released + 1
  elseif not v then
    redis.call('SREM', KEYS[1], path)
  end
end
if released > 0 then changed(ARGV[4], ARGV[1]) end
return released
