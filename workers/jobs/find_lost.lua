-- Which of the given jobs are unfinished and have no message left anywhere: not ready, not
-- delayed, not held by any worker. dramatiq keeps a message's body in its queue's ".msgs" hash
-- from enqueue to ack, so the body answers for all three.
--
-- KEYS: [active jobs, in-flight pointers]
-- ARGV: [namespace, now, job id, ...]
-- A job that has finished leaves the active set; one whose message exists is looked at again
-- later (its score becomes now). Returns the ids of the lost jobs.
local active, inflight = KEYS[1], KEYS[2]
local namespace, now = ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV do
  local job_id = ARGV[i]
  local state = redis.call('HGET', namespace .. ':job:' .. job_id, 'state')
  if not state or state == 'succeeded' or state == 'failed' or state == 'blocked' or state == 'cancelled' then
    redis.call('ZREM', active, job_id)
    redis.call('HDEL', inflight, job_id)
  else
    local pointer = redis.call('HGET', inflight, job_id)
    local queue, redis_id
    if pointer then queue, redis_id = string.match(pointer, '^(.-)\t(.*)$') end
    if queue and redis.call('HEXISTS', namespace .. ':' .. queue .. '.msgs', redis_id) == 1 then
      redis.call('ZADD', active, now, job_id)
    else
      table.insert(lost, job_id)
    end
  end
end
return lost
