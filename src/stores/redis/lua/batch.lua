-- All or nothing: puts and deletes. KEYS: for each op, its key and its namespace's fencing counter.
-- ARGV: for each op, its kind ('put' | 'del'), value JSON, ttl ('' = none), token ('' or a lock
-- record's token).
local now = clock()
for i = 1, #KEYS / 2 do
  local key, fence = KEYS[2 * i - 1], KEYS[2 * i]
  local kind, value, ttl, token = ARGV[4 * i - 3], ARGV[4 * i - 2], ARGV[4 * i - 1], ARGV[4 * i]
  if kind == 'del' then
    redis.call('DEL', key)
  else
    if token ~= '' then
      raise_fence(fence, tonumber(token))
      local at = string.find(key, NS_SEP, 1, true)
      if at then note_claim(key, string.sub(key, at + #NS_SEP), ttl ~= '' and tonumber(ttl) or nil) end
    end
    if ttl == '' then
      redis.call('SET', key, '{"v":' .. value .. '}')
    else
      redis.call('SET', key, envelope(value, now + tonumber(ttl)), 'PX', tonumber(ttl))
    end
  end
end
return 1
