-- releaseAllLocks on one primary of a Cluster: every live lock a session holds in a namespace in
-- the slots this node serves (whatever the hold count), optionally only an agent's, in one script.
-- The session's index is one per slot; this finds this node's with SCAN and reaches each lock key
-- through it (the same slot as its index), which `allow-cross-slot-keys` lets one script do.
-- ARGV: the indexes' name before the tag ('\u241Eofl:sess:{'), after it ('}' namespace U+241F
-- sessionId), the namespace's key prefix, sessionId, agentId or '', release channel, the internal
-- prefix ('\u241Eofl:'). Returns how many it deleted.
local before, after, prefix, sid, aid, channel, internal = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local function glob(s) return (string.gsub(s, '([%*%?%[%]\\])', '\\%1')) end
local pattern = glob(before) .. '*' .. glob(after)
local now = clock()
local released = 0
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
  cursor = page[1]
  for _, index in ipairs(page[2]) do
    local tag = string.sub(index, #before + 1, #index - #after)
    -- the pattern's * may also match a namespace that merely looks alike: only a tag is wanted
    if string.sub(index, 1, #before) == before and string.sub(index, -#after) == after and string.match(tag, '^%w+$') then
      local drop = {}
      for _, path in ipairs(redis.call('SMEMBERS', index)) do
        local key = prefix .. path
        local v = decode_lock(redis.call('GET', key), now)
        if v and v.sessionId == sid and (aid == '' or v.agentId == aid) then
          redis.call('DEL', key)
          released = released + 1
          drop[#drop + 1] = path
          if redis.call('EXISTS', internal .. 'q:{' .. tag .. '}' .. key) == 1 then redis.pcall('PUBLISH', channel, key) end
        elseif not v or v.sessionId ~= sid then
          drop[#drop + 1] = path
        end
      end
      for first = 1, #drop, 500 do redis.call('SREM', index, unpack(drop, first, math.min(first + 499, #drop))) end
    end
  end
until cursor == '0'
return released
