-- One stage run's usage, added where it is kept: the job's record, the tenant's day, the all-time
-- totals, and the index of tenants by the last day they used anything.
--
-- KEYS: [job record, the tenant's day hash, totals hash, tenants index (zset)]
-- ARGV: [stage, model ('-' for none), tenant, day (days since the epoch), day hash TTL in s,
--        '1' when the run completed the stage (one more job of it), wall_s, device_s, calls, cost]
-- A measure given as '' adds nothing (and writes no field).
local stage, model, tenant, day, ttl_s, completed = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local measures = {{'wall_s', ARGV[7]}, {'device_s', ARGV[8]}, {'calls', ARGV[9]}, {'cost', ARGV[10]}}
-- A record that has expired or was never written gets no stray hash of usage fields.
local recorded = redis.call('EXISTS', KEYS[1]) == 1
local row = stage .. ':' .. model .. ':'
local total = tenant .. ':' .. row

if completed == '1' then
  redis.call('HINCRBY', KEYS[2], row .. 'jobs', 1)
  redis.call('HINCRBY', KEYS[3], total .. 'jobs', 1)
end
for _, measure in ipairs(measures) do
  local name, value = measure[1], measure[2]
  if value ~= '' then
    if recorded then redis.call('HINCRBYFLOAT', KEYS[1], 'usage.' .. stage .. '.' .. name, value) end
    redis.call('HINCRBYFLOAT', KEYS[2], row .. name, value)
    redis.call('HINCRBYFLOAT', KEYS[3], total .. name, value)
  end
end
redis.call('EXPIRE', KEYS[2], ttl_s)
local last = redis.call('ZSCORE', KEYS[4], tenant)
if not last or tonumber(last) < day then
  redis.call('ZADD', KEYS[4], day, tenant)
end
