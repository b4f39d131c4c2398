-- GCRA (generic cell rate algorithm): one request per interval, plus a burst, shared by every
-- caller through one key that holds the theoretical arrival time (TAT) in ms. Time is Redis's
-- own clock, so callers on different hosts agree.
--
-- KEYS: [the limit's TAT key]
-- ARGV: [interval ms, burst (requests allowed at once beyond the steady rate)]
-- Returns the ms to wait before retrying: 0 means the request is allowed and counted.
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allowed_at = tat - burst * interval
if now < allowed_at then
  return allowed_at - now
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + 1000)
return 0
