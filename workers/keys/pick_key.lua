-- Picks a usable key of a pool: not disabled, not cooling down, within its own quota (GCRA).
--
-- KEYS: [round-robin counter, state hash of key 1, state hash of key 2, ...]
-- ARGV: [strategy ('round_robin' | 'least_used'), quota interval ms (0: no quota), reserve (1/0)]
-- Returns {index (0-based) of the picked key, 0}, or {-1, ms until one may be usable}, or
-- {-1, -1} when every key is disabled. With reserve = 0 nothing is counted (a peek).
local strategy, interval, reserve = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local count = #KEYS - 1

local start = 0
if strategy == 'round_robin' then
  local turn = reserve and redis.call('INCR', KEYS[1]) or (tonumber(redis.call('GET', KEYS[1]) or '0') + 1)
  start = (turn - 1) % count
end

local best, best_tat, soonest
for offset = 0, count - 1 do
  local slot = (start + offset) % count + 2
  local state = KEYS[slot]
  if not redis.call('HGET', state, 'disabled_reason') then
    -- The key's quota is spent until its theoretical arrival time; a 429 cools it down too.
    local tat = math.max(now, tonumber(redis.call('HGET', state, 'tat_ms') or '0'))
    local ready_at = math.max(tat, tonumber(redis.call('HGET', state, 'cooldown_until_ms') or '0'))
    if ready_at <= now then
      if best == nil or tat < best_tat then best, best_tat = slot, tat end
      if strategy == 'round_robin' then break end
    elseif soonest == nil or ready_at < soonest then
      soonest = ready_at
    end
  end
end

if best then
  if reserve then
    redis.call('HSET', KEYS[best], 'tat_ms', best_tat + interval, 'last_used_ms', now)
    redis.call('HINCRBY', KEYS[best], 'requests', 1)
  end
  return {best - 2, 0}
end
if soonest == nil then return {-1, -1} end
return {-1, soonest - now}
