-- Moves a job to a new state, unless it has already finished, and appends the change to the
-- event stream: one round trip for the record and its event.
--
-- KEYS: [job hash, event stream]
-- ARGV: [events maxlen, now, job id, new state, stage, error, attempt field or "", field, value, ...]
-- Returns 1 if the job moved, 0 if it had finished (nothing changes), -1 if there is no such job.
local job, events = KEYS[1], KEYS[2]
local maxlen, now, job_id, state, stage, error_text, attempt_field =
    ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]

local current = redis.call('HGET', job, 'state')
if not current then return -1 end
if current == 'succeeded' or current == 'failed' or current == 'blocked' or current == 'cancelled' then
  return 0
end

if attempt_field ~= '' then redis.call('HINCRBY', job, attempt_field, 1) end
redis.call('HSET', job, 'state', state, 'updated_at', now)
if stage ~= '' then redis.call('HSET', job, 'stage', stage) end
if error_text ~= '' then redis.call('HSET', job, 'error', error_text) end
if #ARGV > 7 then redis.call('HSET', job, unpack(ARGV, 8)) end

local event = {'job_id', job_id, 'event', state, 'at', now}
if stage ~= '' then table.insert(event, 'stage'); table.insert(event, stage) end
if error_text ~= '' then table.insert(event, 'error'); table.insert(event, error_text) end
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', unpack(event))
return 1
