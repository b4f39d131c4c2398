-- Moves a job to a new state, unless it has already finished, and appends the change to the
-- event stream, naming the job's tenant: one round trip for the record and its event.
--
-- KEYS: [job hash, event stream, active jobs, in-flight pointers, safety block counts,
--        blocked job ids]
-- ARGV: [events maxlen, now, job id, new state, stage, error, attempt field or "",
--        stage index or "", retention ms, field, value, ...]
-- A stage index keeps progress monotonic: a late write about an earlier stage (from another
-- worker's batch) does not move the job back. A finished job's record expires after the
-- retention; an unfinished one never does (a failed batch job sent round again loses its expiry
-- when it next moves).
-- Returns 1 if the job moved, 0 if it had finished or moved past that stage, -1 if there is no
-- such job.
-- A job moved to blocked with its blocked_check and blocked_category fields counts the block
-- (see finish_counts.lua).
local job, events, active, inflight = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local maxlen, now, job_id, state, stage, error_text, attempt_field, stage_index, retention_ms =
    ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]

local current = redis.call('HGET', job, 'state')
if not current then return -1 end
if current == 'succeeded' or current == 'failed' or current == 'blocked' or current == 'cancelled' then
  return 0
end
if stage_index ~= '' then
  if tonumber(stage_index) < tonumber(redis.call('HGET', job, 'stage_index') or '-1') then return 0 end
  redis.call('HSET', job, 'stage_index', stage_index)
end

if attempt_field ~= '' then redis.call('HINCRBY', job, attempt_field, 1) end
redis.call('HSET', job, 'state', state, 'updated_at', now)
if stage ~= '' then redis.call('HSET', job, 'stage', stage) end
if error_text ~= '' then redis.call('HSET', job, 'error', error_text) end
if #ARGV > 9 then redis.call('HSET', job, unpack(ARGV, 10)) end

-- A finished job leaves the reconciler's view; an unfinished one is looked at again later.
-- A job of a batch counts its final state in the batch's hash (see workers/batches/store.py).
if state == 'succeeded' or state == 'failed' or state == 'blocked' or state == 'cancelled' then
  redis.call('ZREM', active, job_id)
  redis.call('HDEL', inflight, job_id)
  redis.call('PEXPIRE', job, retention_ms)
  if state == 'blocked' then count_block(job, KEYS[5], KEYS[6], job_id) end
  count_in_batch(job, state)
else
  redis.call('ZADD', active, now, job_id)
  redis.call('PERSIST', job)
end

local event = {'job_id', job_id, 'event', state, 'at', now}
if stage ~= '' then table.insert(event, 'stage'); table.insert(event, stage) end
if error_text ~= '' then table.insert(event, 'error'); table.insert(event, error_text) end
local tenant = redis.call('HGET', job, 'tenant')
if tenant then table.insert(event, 'tenant'); table.insert(event, tenant) end
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', unpack(event))
return 1
