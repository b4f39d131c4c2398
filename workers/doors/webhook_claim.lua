-- Claims due webhook deliveries for one sender: each is left in the delivery set with its score
-- moved to the lease deadline, so that if the sender dies mid-attempt it is due again then.
--
-- KEYS: [delivery set]
-- ARGV: [now, lease deadline, member, ...]
-- Returns the members claimed: those still due (another sender may have claimed the rest).
local claimed = {}
for i = 3, #ARGV do
  local due = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if due and tonumber(due) <= tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
    table.insert(claimed, ARGV[i])
  end
end
return claimed
