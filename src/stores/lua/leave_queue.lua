-- A waiter gives up: out of the queues of n paths. KEYS: n lock keys, n queue sorted sets,
-- n queue hashes. ARGV: waiterId, release channel. Whoever still waits is told to look again.
local n = #KEYS / 3
for i = 1, n do
  redis.call('ZREM', KEYS[n + i], ARGV[1])
  redis.call('HDEL', KEYS[2 * n + i], ARGV[1])
  if redis.call('EXISTS', KEYS[n + i]) == 1 then redis.pcall('PUBLISH', ARGV[2], KEYS[i]) end
end
return 1
