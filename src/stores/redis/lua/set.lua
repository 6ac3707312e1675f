-- A cache value, its expiry on the server's clock. KEYS: the key, the fencing counter of its slot,
-- the namespace's claim set. ARGV: value JSON, ttl ('' = none), token ('' unless the value is a
-- lock record, whose token later grants must stay above), the key without its namespace.
local now = clock()
if ARGV[3] ~= '' then
  raise_fence(KEYS[2], tonumber(ARGV[3]))
  -- a lock record written directly (a restore, a fallback's write-back): a claim joins the set
  note_claim(KEYS[3], ARGV[4], ARGV[2] ~= '' and tonumber(ARGV[2]) or nil)
end
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], '{"v":' .. ARGV[1] .. '}')
else
  local ttl = tonumber(ARGV[2])
  redis.call('SET', KEYS[1], envelope(ARGV[1], now + ttl), 'PX', ttl)
end
return 1
