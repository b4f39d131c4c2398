-- dramatiq's fetch, and whether it left the queue empty. Loaded by workers/consumer.py after dramatiq's
-- own dispatch script, which it wraps, as it is, in the function dramatiq_dispatch(KEYS, ARGV).
-- When the queue is left empty, its wake tokens (workers/enqueue.lua) are dropped: they were pushed
-- for messages fetched by now, and the next enqueue pushes a fresh one, so an idle consumer that
-- blocks on the wake list next sleeps until there is something to fetch, not once per stale token.
--
-- KEYS: [namespace, the queue's list, its wake list]
-- ARGV: dramatiq's dispatch arguments ("fetch", ..., how many)
-- Returns {1 if the queue is now empty else 0, the fetched message bodies}.
local fetched = dramatiq_dispatch({KEYS[1]}, ARGV)
local empty = redis.call('LLEN', KEYS[2]) == 0
if empty then
  redis.call('DEL', KEYS[3])
end
return {empty and 1 or 0, fetched}
