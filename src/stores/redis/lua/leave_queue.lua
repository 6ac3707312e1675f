-- A waiter gives up: out of the queues of n paths. KEYS: n lock keys, then the namespace's waits
-- hash. ARGV: waiterId, release channel, the namespace's key prefix. Whoever still waits is told
-- to look again.
local n = #KEYS - 1
for i = 1, n do
  redis.call('ZREM', QUEUE .. KEYS[i], ARGV[1])
  redis.call('HDEL', QUEUE_INFO .. KEYS[i], ARGV[1])
  if redis.call('EXISTS', QUEUE .. KEYS[i]) == 1 then redis.pcall('PUBLISH', ARGV[2], KEYS[i]) end
end
if redis.call('HDEL', KEYS[n + 1], ARGV[1]) == 1 then changed(ARGV[2], ARGV[3]) end
return 1
