-- A cache value, its expiry on the server's clock. KEYS[1] the key, KEYS[2] the fencing counter of
-- its namespace. ARGV: value JSON, ttl ('' = none), token ('' unless the value is a lock record,
-- whose token later grants must stay above).
local now = clock()
if ARGV[3] ~= '' then
  raise_fence(KEYS[2], tonumber(ARGV[3]))
  -- a lock record written directly (a restore, a fallback's write-back): a claim joins the claim set
  local i = string.find(KEYS[1], NS_SEP, 1, true)
  if i then note_claim(KEYS[1], string.sub(KEYS[1], i + #NS_SEP), ARGV[2] ~= '' and tonumber(ARGV[2]) or nil) end
end
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], '{"v":' .. ARGV[1] .. '}')
else
  local ttl = tonumber(ARGV[2])
  redis.call('SET', KEYS[1], envelope(ARGV[1], now + ttl), 'PX', ttl)
end
return 1
