-- A waiter gives up: out of the queues of n paths. KEYS: n lock keys.
-- ARGV: waiterId, release channel. Whoever still waits is told to look again.
for i = 1, #KEYS do
  redis.call('ZREM', QUEUE .. KEYS[i], ARGV[1])
  redis.call('HDEL', QUEUE_INFO .. KEYS[i], ARGV[1])
  if redis.call('EXISTS', QUEUE .. KEYS[i]) == 1 then redis.pcall('PUBLISH', ARGV[2], KEYS[i]) end
end
return 1
