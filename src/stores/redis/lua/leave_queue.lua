-- A waiter gives up: out of the queues of n paths. KEYS: for each path its queue and its queue's
-- info, then the waits hash and the watching marker. ARGV: waiterId, release channel, the
-- namespace's key prefix, then the n lock keys. Whoever still waits is told to look again.
local n = (#KEYS - 2) / 2
for i = 1, n do
  local qz, qh = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('ZREM', qz, ARGV[1])
  redis.call('HDEL', qh, ARGV[1])
  if redis.call('EXISTS', qz) == 1 then redis.pcall('PUBLISH', ARGV[2], ARGV[3 + i]) end
end
if redis.call('HDEL', KEYS[2 * n + 1], ARGV[1]) == 1 then changed(ARGV[2], ARGV[3], KEYS[2 * n + 2]) end
return 1
