-- Compare-and-delete: sweeps remove an expired entry only if nobody rewrote it meanwhile.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
