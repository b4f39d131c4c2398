-- Counts one provider failure of a model; at the threshold the model cools down.
--
-- KEYS: [failures in a row, cooldown marker]
-- ARGV: [failures before the cooldown, cooldown ms, ms the count is kept after a failure, reason]
-- The count is reset only by a success (``ModelCooldowns.succeeded``), so once a cooldown ends
-- the next failure starts another at once, as a circuit breaker's half-open probe would.
-- Returns {failures in a row, 1 if the model is now cooling down else 0}.
local failures = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if failures >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[2])
  return {failures, 1}
end
return {failures, 0}
