-- Shared by every lock script (prepended by the Rust side). Mirrors src/core/lock.rs.
-- A record is live while the envelope's x and the record's expiresAt are in the future.
local function decode_lock(raw, now)
  if not raw then return nil, nil end
  local ok, env = pcall(cjson.decode, raw)
  if not ok or type(env) ~= 'table' or env.v == nil then return nil, 'corrupt' end
  local x = tonumber(env.x)
  if x and x <= now then return nil, nil end
  local v = env.v
  if type(v) ~= 'table' or type(v.sessionId) ~= 'string' then return nil, 'corrupt' end
  local vexp = tonumber(v.expiresAt) or 0
  if vexp ~= 0 and vexp <= now then return nil, nil end
  -- legacy records carry no expiresAt: report the envelope's
  if vexp == 0 and x then v.expiresAt = x end
  return v, nil
end

-- A lock key's waiter queue: a sorted set (waiter id by ticket) and a hash (waiter id -> lease,
-- session, agent), named from the lock key here rather than sent as KEYS, which keeps the
-- acquire that does not wait as small as it was. (Like the session index: one server, not Cluster.)
local QUEUE, QUEUE_INFO = '\226\144\158ofl:q:', '\226\144\158ofl:qh:'

local function envelope(enc, expires)
  return '{"v":' .. enc .. ',"x":' .. string.format('%d', expires) .. '}'
end
