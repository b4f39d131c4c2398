-- Prepended to accept.lua and transition.lua: counts a safety block where the job becomes blocked,
-- so a block is counted once, when it is recorded, whichever path recorded it.
-- A blocked job that names its check and category adds one to the check:category field of the
-- counts hash and joins the recent-blocks index (the newest BLOCKED_KEPT ids, scored by Redis's
-- clock in microseconds, so blocks recorded in the same millisecond keep their order).
local BLOCKED_KEPT = 1000

local function count_block(job, counts, recent, job_id)
  local check = redis.call('HGET', job, 'blocked_check')
  local category = redis.call('HGET', job, 'blocked_category')
  if not check or not category then return end
  redis.call('HINCRBY', counts, check .. ':' .. category, 1)
  local clock = redis.call('TIME')
  redis.call('ZADD', recent, tonumber(clock[1]) + tonumber(clock[2]) / 1e6, job_id)
  redis.call('ZREMRANGEBYRANK', recent, 0, -BLOCKED_KEPT - 1)
end

