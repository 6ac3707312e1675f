-- Recovery of a lock granted on the hybrid's fallback: write it only if nobody holds the key.
-- KEYS[1] lock key, KEYS[2] the session's index set. ARGV: envelope, px, path.
if redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then
  redis.call('SADD', KEYS[2], ARGV[3])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
  return 1
end
return 0
