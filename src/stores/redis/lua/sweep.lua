-- Deletes the entries among KEYS whose envelope expiry has passed on the server's clock (written
-- without a Redis TTL, by an old client); returns how many.
local now = clock()
local n = 0
for i = 1, #KEYS do
  local raw = redis.call('GET', KEYS[i])
  local x = raw and tonumber(string.match(raw, '"x":(%-?[%d.eE+]+)}%s*$'))
  if x and x <= now then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
return n
