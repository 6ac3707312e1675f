-- Shared by every lock script (prepended by the Rust side). Mirrors src/core/lock.rs.
-- Time is the server's (TIME), never a client's: every expiry, lease and timestamp comes from it.

-- Now on the server: epoch milliseconds and microseconds (fencing tokens follow the latter).
local function clock()
  local t = redis.call('TIME')
  local s, us = tonumber(t[1]), tonumber(t[2])
  return s * 1000 + math.floor(us / 1000), s * 1000000 + us
end

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

-- cjson writes numbers with 14 significant digits; tokens have 16 (microseconds). The token is
-- written by hand so it reads back exactly.
local TOKEN_MARK = 'ofl:token-placeholder'
local function encode_lock(v)
  local tok = v.token
  if type(tok) ~= 'number' then return cjson.encode(v) end
  v.token = TOKEN_MARK
  local enc = cjson.encode(v)
  v.token = tok
  local s, e = string.find(enc, '"' .. TOKEN_MARK .. '"', 1, true)
  return string.sub(enc, 1, s - 1) .. string.format('%d', tok) .. string.sub(enc, e + 1)
end

local function envelope(enc, expires)
  return '{"v":' .. enc .. ',"x":' .. string.format('%d', expires) .. '}'
end

-- A new fencing token: the counter's next value, but never behind the server's clock in
-- microseconds, so a counter lost in a restart still hands out tokens above every earlier one.
local function next_token(fence, now_us)
  local t = redis.call('INCR', fence)
  if t < now_us then
    t = now_us
    redis.call('SET', fence, string.format('%d', t))
  end
  return t
end

-- A token written back from elsewhere (a re-assertion, the hybrid's fallback, a restore):
-- later grants must be above it.
local function raise_fence(fence, token)
  if token and token > (tonumber(redis.call('GET', fence)) or 0) then
    redis.call('SET', fence, string.format('%d', token))
  end
end

-- The epoch marker clients plant when they connect (one server; a Cluster has none): gone means
-- the server lost its data (a restart without persistence or a flush) since. New grants then wait
-- RESTART_GRACE ms, while the processes that held locks put them back (restart.rs looks every
-- 200 ms). Returns the grace left, or nil.
local RESTART_GRACE = 2000
local function recovering(epoch, flag)
  local left = redis.call('PTTL', flag)
  if left > 0 then return left end
  if redis.call('EXISTS', epoch) == 1 then return nil end
  redis.call('SET', epoch, 'lost-' .. redis.call('TIME')[1])
  redis.call('SET', flag, '1', 'PX', RESTART_GRACE)
  return RESTART_GRACE
end

-- A path ending in "/" claims a folder and everything below it (docs/api.md, Claims).
local function is_claim(p) return string.byte(p, -1) == 47 end
-- A lock record written outside an acquire (a re-assertion, a restore): a claim joins the
-- namespace's claim set, which file acquires look at.
local function note_claim(set, path, px)
  if not is_claim(path) then return end
  redis.call('SADD', set, path)
  if px and redis.call('PTTL', set) < px then redis.call('PEXPIRE', set, px) end
  if not px then redis.call('PERSIST', set) end
end

-- Someone runs `opencode-file-lock watch` (or onChange): lock changes are announced on the release
-- channel as the namespace's changes key while the watching marker exists.
local CHANGES = '\226\144\158ofl:changes'
local function changed(channel, prefix, watching)
  if redis.call('EXISTS', watching) == 1 then redis.pcall('PUBLISH', channel, prefix .. CHANGES) end
end
