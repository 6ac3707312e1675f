-- All or nothing: puts and deletes. KEYS: for each op, its key, the fencing counter of its slot
-- and its namespace's claim set. ARGV: for each op, its kind ('put' | 'del'), value JSON, ttl
-- ('' = none), token ('' or a lock record's token), the key without its namespace.
local now = clock()
for i = 1, #KEYS / 3 do
  local key, fence, claims = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local kind, value, ttl, token, logical = ARGV[5 * i - 4], ARGV[5 * i - 3], ARGV[5 * i - 2], ARGV[5 * i - 1], ARGV[5 * i]
  if kind == 'del' then
    redis.call('DEL', key)
  else
    if token ~= '' then
      raise_fence(fence, tonumber(token))
      note_claim(claims, logical, ttl ~= '' and tonumber(ttl) or nil)
    end
    if ttl == '' then
      redis.call('SET', key, '{"v":' .. value .. '}')
    else
      redis.call('SET', key, envelope(value, now + tonumber(ttl)), 'PX', tonumber(ttl))
    end
  end
end
return 1
