-- Prepended to accept.lua and transition.lua: the counters a job's final state moves, in the
-- script that records it, so each is counted once, whichever path recorded it.
--
-- A job of a batch counts its final state in the batch's hash (see workers/batches/store.py).
local function count_in_batch(job, state)
  local batch = redis.call('HGET', job, 'batch_key')
  if batch then
    redis.call('HINCRBY', batch, 'finished', 1)
    redis.call('HINCRBY', batch, 'n_' .. state, 1)
  end
end

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

