-- One run's counts, added to the all-time hash and to its minute's hash, which then expires its TTL
-- after this last write (workers/jobs/stage_stats.py).
--
-- KEYS: [all-time hash, minute hash]
-- ARGV: [minute TTL in s, duration sum field ('' for none), seconds to add to it, field to add one to, ...]
local ttl_s, sum_field, seconds = ARGV[1], ARGV[2], ARGV[3]
for _, key in ipairs(KEYS) do
  if sum_field ~= '' then redis.call('HINCRBYFLOAT', key, sum_field, seconds) end
  for i = 4, #ARGV do redis.call('HINCRBY', key, ARGV[i], 1) end
end
redis.call('EXPIRE', KEYS[2], ttl_s)
