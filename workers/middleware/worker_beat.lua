-- Writes a worker process's registry entry and stamps its heartbeat with Redis's clock, so the
-- reader compares times from one clock whatever the hosts' clocks say.
--
-- KEYS: [index sorted set, the worker's hash]
-- ARGV: [worker id, ttl (ms), field, value, field, value, ...]
-- The hash expires ttl after this beat unless another beat comes; index ids older than the ttl
-- (workers that died) are dropped. Returns the heartbeat time (ms).
local index, entry = KEYS[1], KEYS[2]
local worker_id, ttl_ms = ARGV[1], tonumber(ARGV[2])
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local fields = {'last_seen', now_ms}
for i = 3, #ARGV do
  table.insert(fields, ARGV[i])
end
redis.call('HSET', entry, unpack(fields))
redis.call('PEXPIRE', entry, ttl_ms)
redis.call('ZADD', index, now_ms, worker_id)
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. (now_ms - ttl_ms))
return now_ms
