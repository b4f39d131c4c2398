-- One message onto its queue with what framequeue keeps beside it, atomically, in one call.
-- Loaded by workers/broker.py after dramatiq's own dispatch script, which it wraps, as it is, in the
-- function dramatiq_dispatch(KEYS, ARGV): the queue is written exactly as RedisBroker.enqueue writes it.
--
-- KEYS: [namespace, the queue's wake list, the in-flight hash]
-- ARGV: [dramatiq's ten dispatch arguments ("enqueue", ..., message id, message body),
--        wake tokens kept, job id ('' when the message carries no job), in-flight pointer]
dramatiq_dispatch({KEYS[1]}, {unpack(ARGV, 1, 10)})
-- A token wakes one idle consumer of the queue; the list stays bounded when nobody is idle.
redis.call('LPUSH', KEYS[2], 1)
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[11]) - 1)
if ARGV[12] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[12], ARGV[13])
end
