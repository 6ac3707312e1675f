-- Has the server lost its data, or is it another server? KEYS[1] the epoch marker; ARGV[1] a
-- fresh id to plant when it is missing. Returns {marker, run id}: a new marker means the data
-- went (a restart without persistence); a new run id, a restart or a failover.
local e = redis.call('GET', KEYS[1])
if not e then
  redis.call('SET', KEYS[1], ARGV[1])
  e = ARGV[1]
end
return {e, string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''}
