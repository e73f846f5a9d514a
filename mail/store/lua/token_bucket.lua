-- Token buckets, all or none, in one atomic step (loaded by mail/store/ratelimit.py).
--
-- KEYS[i]            the hash of bucket i: {tokens, updated_us}
-- ARGV[3i-2 .. 3i]   rate (tokens per second), capacity (burst), cost (tokens requested) of bucket i
--
-- Returns {allowed, tokens_left, retry_after_us, now_us}:
--   allowed          1 when every bucket held its cost and all were taken; 0 when none were
--   tokens_left      the lowest balance across the buckets after this call, as a string: Redis
--                    truncates Lua numbers to integers in replies, and balances are fractional
--   retry_after_us   0 when allowed; otherwise the time until every bucket holds its cost
--   now_us           the server clock, in microseconds since the epoch
--
-- The clock is the server's (TIME), never the caller's, so every process and node shares it.
-- A missing key is a full bucket; PEXPIRE drops a bucket once it would have refilled anyway.

local n = #KEYS
if n == 0 or #ARGV ~= 3 * n then
  return redis.error_reply('token_bucket: expected N keys and 3N arguments (rate, capacity, cost)')
end

local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])

-- Float rounding in the refill can leave 0.9999999 of a token where 1 is due; forgive that much.
local EPSILON = 1e-9

local rates, capacities, costs, levels, stamps = {}, {}, {}, {}, {}
local allowed = true
local retry_after_us = 0

for i = 1, n do
  local rate = tonumber(ARGV[3 * i - 2])
  local capacity = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  if not (rate and capacity and cost) or rate <= 0 or capacity < 1 or cost <= 0 or cost > capacity then
    return redis.error_reply('token_bucket: bad rate, capacity or cost for ' .. KEYS[i])
  end

  local state = redis.call('HMGET', KEYS[i], 'tokens', 'updated_us')
  local level = tonumber(state[1])
  local stamp = tonumber(state[2])
  if level == nil or stamp == nil then
    level, stamp = capacity, now_us
  elseif now_us > stamp then
    level, stamp = math.min(capacity, level + (now_us - stamp) * rate / 1000000), now_us
  else
    -- The clock went back (say, a failover to a node whose clock lags): no refill until it
    -- catches up. That errs towards refusing, and PEXPIRE bounds how long it can last.
    level = math.min(capacity, level)
  end

  if level + EPSILON < cost then
    allowed = false
    retry_after_us = math.max(retry_after_us, math.ceil((cost - level) * 1000000 / rate))
  end
  rates[i], capacities[i], costs[i], levels[i], stamps[i] = rate, capacity, cost, level, stamp
end

local lowest = nil
for i = 1, n do
  local level = levels[i]
  -- A refusal writes nothing: the stored state yields the same balance on the next call.
  if allowed then
    level = math.max(0, level - costs[i])
    redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', level), 'updated_us',
      string.format('%d', stamps[i]))
    -- Idle for as long as a full refill takes (plus a second of slack) is full: drop the key.
    redis.call('PEXPIRE', KEYS[i], math.ceil(capacities[i] * 1000 / rates[i]) + 1000)
  end
  if lowest == nil or level < lowest then
    lowest = level
  end
end

return {allowed and 1 or 0, string.format('%.17g', lowest), retry_after_us, now_us}
