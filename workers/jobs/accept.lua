-- Accepts a job: its record, its index entries and its first stage message, all or nothing.
-- A job is "accepted" only once this has run, so no record is ever left without its message.
--
-- KEYS: [job hash, job index, active jobs, events stream, in-flight pointers,
--        queue list or "", queue message hash or "", safety block counts, blocked job ids,
--        queue wake list or "", the tenant's job index, the set of tenants with an index]
-- ARGV: [events maxlen, now, job id, emit ("1" or ""), redis message id or "", message body or "",
--        queue name or "", retention ms, field, value, ...]
-- The message is enqueued the way dramatiq's dispatch.lua enqueues (HSET body, RPUSH id), and
-- its place is remembered in the in-flight pointers and a token wakes an idle consumer of the
-- queue (workers/consumer.py), as FramequeueBroker.enqueue does.
-- A job accepted already finished (blocked at submission) expires after the retention, as
-- transition.lua makes every finished job's record do, and one blocked by a safety check counts
-- the block (see finish_counts.lua).
-- Its event names the job's tenant (the record's ``tenant`` field), and a tenant's job is listed in
-- the tenant's own index too (so listing one tenant's jobs never reads another's).
-- Returns 1 if the job was new, 0 (and nothing changes) if a job with this id exists.
local job, index, active, events, inflight, queue, messages, blocks, blocked, wake, tenant_index, tenants = unpack(KEYS)
local maxlen, now, job_id, emit, redis_id, body, queue_name, retention_ms = unpack(ARGV, 1, 8)

if redis.call('EXISTS', job) == 1 then return 0 end
redis.call('HSET', job, unpack(ARGV, 9))
redis.call('ZADD', index, now, job_id)
if tenant_index ~= index then  -- the operator's jobs are listed by the job index alone
  redis.call('ZADD', tenant_index, now, job_id)
  redis.call('SADD', tenants, redis.call('HGET', job, 'tenant'))
end
local state = redis.call('HGET', job, 'state')
local finished = state == 'succeeded' or state == 'failed' or state == 'blocked' or state == 'cancelled'
if finished then
  redis.call('PEXPIRE', job, retention_ms)
  count_in_batch(job, state)  -- a batch's job accepted finished (blocked by the prompt screen) counts at once
else
  redis.call('ZADD', active, now, job_id)
end
if state == 'blocked' then count_block(job, blocks, blocked, job_id) end
if redis_id ~= '' then
  redis.call('HSET', messages, redis_id, body)
  redis.call('RPUSH', queue, redis_id)
  redis.call('HSET', inflight, job_id, queue_name .. '\t' .. redis_id)
  redis.call('LPUSH', wake, '1')
  redis.call('LTRIM', wake, 0, 63)  -- keeps WAKE_TOKENS_KEPT (workers/consumer.py)
end
if emit ~= '' then
  local event = {'job_id', job_id, 'event', state, 'at', now}
  local error_text = redis.call('HGET', job, 'error')
  if error_text and error_text ~= '' then table.insert(event, 'error'); table.insert(event, error_text) end
  local tenant = redis.call('HGET', job, 'tenant')
  if tenant then table.insert(event, 'tenant'); table.insert(event, tenant) end
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', unpack(event))
end
return 1
