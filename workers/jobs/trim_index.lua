-- Drops from the job index the entries, among those created before a time, whose record is gone
-- (it expired a retention after the job finished). One bounded page per run, so Redis is never
-- held for long; a job submitted again under the same id meanwhile keeps its entry.
--
-- KEYS: [job index, and for a tenant's index the set of tenants with an index]
-- ARGV: [namespace, created before (epoch s), offset, page size, and for a tenant's index the tenant]
-- An old entry whose job is unfinished, or finished and not yet expired, stays. A hash without a
-- state (fields a late write left after the record expired) is deleted with its entry.
-- A tenant's index left empty leaves the set of tenants, in the same step as its last entry (an
-- accept adds both back together).
-- Returns {entries looked at, entries removed}.
local index, tenants = KEYS[1], KEYS[2]
local namespace, before, offset, page_size, tenant = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ids = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. before, 'LIMIT', offset, page_size)
local removed = 0
for _, job_id in ipairs(ids) do
  local job = namespace .. ':job:' .. job_id
  if redis.call('HEXISTS', job, 'state') == 0 then
    redis.call('DEL', job)
    redis.call('ZREM', index, job_id)
    removed = removed + 1
  end
end
if tenants and redis.call('EXISTS', index) == 0 then redis.call('SREM', tenants, tenant) end
return {#ids, removed}
