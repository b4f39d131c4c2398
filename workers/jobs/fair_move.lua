-- Moves the oldest message of one tenant's pending list onto its stage queue: all or nothing, so a
-- crash leaves it in exactly one place.
--
-- KEYS: [pending list, pending message hash, stage queue list, stage queue message hash,
--        in-flight pointers, admitted jobs set, stage queue wake list]
-- ARGV: [pending list's queue name, stage queue name]
-- The message is enqueued the way dramatiq's dispatch.lua enqueues (HSET body, RPUSH id) under the
-- broker-side id it was accepted with; the job's in-flight pointer follows it (unless a newer
-- message has replaced it), the job joins the dispatcher's admitted set and a token wakes an idle
-- consumer (workers/consumer.py). Returns the job id moved, "" for a message whose body was gone
-- or that names no job, or false when the list is empty.
local pending, pending_msgs, queue, msgs, inflight, admitted, wake = unpack(KEYS)
local pending_name, queue_name = ARGV[1], ARGV[2]

local redis_id = redis.call('LPOP', pending)
if not redis_id then return false end
local body = redis.call('HGET', pending_msgs, redis_id)
redis.call('HDEL', pending_msgs, redis_id)
if not body then return '' end
redis.call('HSET', msgs, redis_id, body)
redis.call('RPUSH', queue, redis_id)
redis.call('LPUSH', wake, '1')
redis.call('LTRIM', wake, 0, 63)  -- keeps WAKE_TOKENS_KEPT (workers/consumer.py)
local ok, message = pcall(cjson.decode, body)
local job_id = ''
if ok and type(message) == 'table' and type(message.args) == 'table' and type(message.args[1]) == 'table'
    and type(message.args[1].job) == 'table' and type(message.args[1].job.id) == 'string' then
  job_id = message.args[1].job.id
end
if job_id == '' then return '' end
if redis.call('HGET', inflight, job_id) == pending_name .. '\t' .. redis_id then
  redis.call('HSET', inflight, job_id, queue_name .. '\t' .. redis_id)
end
redis.call('SADD', admitted, job_id)
return job_id
