-- Delete every live lock a session holds in a namespace on one server (whatever the hold count),
-- optionally only an agent's: one script, whatever slots the paths hash to. The session's index
-- names them; their lock keys (the namespace's prefix and the path) are not in KEYS, which one
-- server allows (a Cluster runs release_session_node.lua on each primary instead).
-- KEYS: the session's index, the waits hash, the watching marker. ARGV: the namespace's key
-- prefix, sessionId, agentId or '', release channel. Returns how many it deleted.
local paths = redis.call('SMEMBERS', KEYS[1])
if #paths == 0 then return 0 end
local now = clock()
local prefix, sid, aid, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
-- releases are announced only when someone waits or watches (one look for all of them)
local announce = redis.call('EXISTS', KEYS[2], KEYS[3]) > 0
local gone, stale = {}, {}
local released = 0
-- in pages: a Lua call takes a bounded number of arguments
for first = 1, #paths, 500 do
  local last = math.min(first + 499, #paths)
  local keys = {}
  for i = first, last do keys[#keys + 1] = prefix .. paths[i] end
  local values = redis.call('MGET', unpack(keys))
  local del = {}
  for j, key in ipairs(keys) do
    local v = decode_lock(values[j], now)
    if v and v.sessionId == sid and (aid == '' or v.agentId == aid) then
      del[#del + 1] = key
      gone[#gone + 1] = paths[first + j - 1]
      if announce then redis.pcall('PUBLISH', channel, key) end
    elseif not v or v.sessionId ~= sid then
      stale[#stale + 1] = paths[first + j - 1]
    end
  end
  if #del > 0 then
    redis.call('DEL', unpack(del))
    released = released + #del
  end
end
-- the index loses what it no longer names (all of it, without an agent filter)
if #gone + #stale == #paths then
  redis.call('DEL', KEYS[1])
else
  for first = 1, #gone, 500 do redis.call('SREM', KEYS[1], unpack(gone, first, math.min(first + 499, #gone))) end
  for first = 1, #stale, 500 do redis.call('SREM', KEYS[1], unpack(stale, first, math.min(first + 499, #stale))) end
end
if released > 0 then changed(channel, prefix, KEYS[3]) end
return released
