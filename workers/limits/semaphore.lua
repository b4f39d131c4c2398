-- A counting semaphore with leases: at most `limit` holders at once. A holder that dies without
-- releasing loses its place when its lease runs out.
--
-- KEYS: [the semaphore's sorted set (holder -> lease expiry ms)]
-- ARGV: [limit, lease ms, holder id]
-- Returns 0 if the holder got (or already had) a place, else the ms until the soonest lease ends.
local limit, lease, holder = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], holder) or redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + lease, holder)
  redis.call('PEXPIRE', KEYS[1], lease)
  return 0
end
local soonest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(soonest[2]) - now)
