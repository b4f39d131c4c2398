-- GCRA (generic cell rate algorithm): one request per interval, plus a burst, shared by every
-- caller through one key that holds the theoretical arrival time (TAT) in ms. Time is Redis's
-- own clock, so callers on different hosts agree.
--
-- KEYS: [the limit's TAT key]
-- ARGV: [interval ms, burst (requests allowed at once beyond the steady rate), reserve (1/0)]
-- Returns 0 if the request is allowed now (and counted), else the ms until it may go. With
-- reserve = 1 that later slot is booked for the caller, who then goes at its time unchecked:
-- waiting requests are served in turn instead of all waking for the same next slot.
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local reserve = ARGV[3] == '1'
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allowed_at = tat - burst * interval
if now < allowed_at and not reserve then
  return allowed_at - now
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return math.max(0, allowed_at - now)
