-- Sets a failed job back to queued so that its stages may run again: one script, so two operators
-- retrying at once reopen it once.
--
-- KEYS: [job hash, active jobs]
-- ARGV: [now, job id, from start ("1": its next message is its first stage's, so its progress
--        starts over; "": it goes on from the stage that failed)]
-- The record no longer expires and loses its error, traceback and dead letter; the reconciler
-- watches it again; a job of a batch takes its failure back from the batch's counts (which its
-- next final state counts again), and the batch is no longer complete.
-- Returns 1 if the job was reopened, 0 if it is not failed (or gone).
local job, active = KEYS[1], KEYS[2]
local now, job_id, from_start = ARGV[1], ARGV[2], ARGV[3] == '1'

if redis.call('HGET', job, 'state') ~= 'failed' then return 0 end
redis.call('HSET', job, 'state', 'queued', 'error', '', 'updated_at', now)
redis.call('HDEL', job, 'traceback', 'dead_letter')
if from_start then redis.call('HSET', job, 'stage', '', 'stage_index', -1) end
redis.call('PERSIST', job)
redis.call('ZADD', active, now, job_id)
local batch = redis.call('HGET', job, 'batch_key')
if batch then
  redis.call('HINCRBY', batch, 'finished', -1)
  redis.call('HINCRBY', batch, 'n_failed', -1)
  redis.call('HDEL', batch, 'completed_at', 'completing')
end
return 1
