-- Lists in their tenants' indexes one page of the job index's entries, for jobs accepted before
-- tenants had an index of their own (accept.lua now writes both). A job whose record is gone is
-- left out, and so are the operator's (one without a tenant field is the operator's, as its record
-- reads): the job index is theirs.
--
-- KEYS: [job index, the set of tenants with an index]
-- ARGV: [namespace, offset, page size, the operator's tenant name, the prefix of a tenant's index key]
-- Returns the number of entries looked at.
local index, tenants = KEYS[1], KEYS[2]
local namespace, offset, page_size, operator, tenant_index = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4],
  ARGV[5]
local entries = redis.call('ZRANGE', index, offset, offset + page_size - 1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local job_id, created_at = entries[i], entries[i + 1]
  local job = namespace .. ':job:' .. job_id
  local tenant = redis.call('HGET', job, 'tenant') or operator
  if tenant ~= operator and redis.call('HEXISTS', job, 'state') == 1 then
    redis.call('ZADD', tenant_index .. tenant, created_at, job_id)
    redis.call('SADD', tenants, tenant)
  end
end
return #entries / 2
