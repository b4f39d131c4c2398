-- Appends an event that is not a state change to the event stream, naming the job's tenant when
-- its record names one (a batch's events, which have no record, name theirs in their fields).
--
-- KEYS: [events stream, job hash]
-- ARGV: [events maxlen, field, value, ...]
local event = {unpack(ARGV, 2)}
local tenant = redis.call('HGET', KEYS[2], 'tenant')
if tenant then table.insert(event, 'tenant'); table.insert(event, tenant) end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(event))
