-- A cap on one owner's unfinished jobs (e.g. one API token's): takes in new job ids, or none of
-- them when they would put the owner over the cap.
--
-- KEYS: [the owner's job ids, every unfinished job id (the reconciler's active set), scratch key]
-- ARGV: [cap, hold ms, owner set ttl ms, job id, ...]
-- The owner's set scores each id with the time (ms, Redis's clock) until which it is held: an id
-- being accepted right now is not in the unfinished set yet and must not be dropped meanwhile, so
-- a new id is held for hold ms; once its acceptance is over it is settled (score 0). Only when the
-- ids would not fit are the owner's finished ids dropped: those neither unfinished nor held
-- (ZINTERSTORE keeps each id's own score). The caller passes each id once.
-- Returns {1, the owner's count with the new ids, how many were new} if they were taken in, else
-- {0, the owner's count, how many would have been new}.
local owned, unfinished, scratch = KEYS[1], KEYS[2], KEYS[3]
local cap, hold, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function count_new()
  local new = 0
  for i = 4, #ARGV do
    if not redis.call('ZSCORE', owned, ARGV[i]) then new = new + 1 end
  end
  return new
end

local new = count_new()
local count = redis.call('ZCARD', owned)
if count + new > cap then
  redis.call('ZRANGESTORE', scratch, owned, '(' .. now, '+inf', 'BYSCORE')
  redis.call('ZINTERSTORE', owned, 2, owned, unfinished, 'WEIGHTS', 1, 0)
  redis.call('ZUNIONSTORE', owned, 2, owned, scratch, 'AGGREGATE', 'MAX')
  redis.call('DEL', scratch)
  new = count_new()
  count = redis.call('ZCARD', owned)
  if count + new > cap then return {0, count, new} end
end
for i = 4, #ARGV do redis.call('ZADD', owned, now + hold, ARGV[i]) end
redis.call('PEXPIRE', owned, ttl)
return {1, count + new, new}
