-- Has the server lost its data, or is it another server? KEYS[1] the epoch marker, KEYS[2] the
-- recovering flag. ARGV: a fresh id to plant when the marker is missing, '1' when this client saw
-- a marker before (then a missing one means the data went: new grants wait, see common.lua),
-- the grace in ms. Returns {marker, run id, ms of grace left}: a new marker means the data went;
-- a new run id, a restart or a failover.
local e = redis.call('GET', KEYS[1])
if not e then
  redis.call('SET', KEYS[1], ARGV[1])
  if ARGV[2] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
  e = ARGV[1]
end
return {e, string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or '', tostring(math.max(0, redis.call('PTTL', KEYS[2])))}
