-- The account-wide budget shared by every replica: at most ARGV[3] Twilio
-- requests in flight, and messages spaced so that no more than ARGV[2]
-- segments go out per second (GCRA with no burst). A separate script from
-- send.lua because its keys carry the account's hash tag, not a number's:
-- Redis Cluster cannot run one script over two slots. Both are sent in one
-- pipeline, so the decision is still one round trip.
--
-- KEYS[1] theoretical arrival time, unix ms   cg:{account}:tat
-- KEYS[2] leases of requests in flight (zset) cg:{account}:leases
-- ARGV[1] cost in segments (0: not a message, only the concurrency cap)
-- ARGV[2] segments per second
-- ARGV[3] most requests in flight
-- ARGV[4] lease id (unique per request)
-- ARGV[5] lease lifetime, ms (the request's deadline: a crashed replica's
--         leases expire on their own)
-- ARGV[6] 'take', or 'give' to hand back what a 'take' got when the request
--         is not sent after all (the lease, and the cost's place in the rate)
--
-- Returns {'ok'} or {'wait', ms, 'rate'|'concurrency'}.

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)

if ARGV[6] == 'give' then
  redis.call('ZREM', KEYS[2], ARGV[4])
  local cost = tonumber(ARGV[1])
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if cost > 0 and tat > now then
    local back = math.max(now, tat - cost * 1000 / tonumber(ARGV[2]))
    redis.call('SET', KEYS[1], tostring(back), 'PX', math.ceil(back - now) + 1000)
  end
  return {'ok'}
end

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  local soonest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local wait = 20
  if soonest[2] then wait = math.max(1, math.min(wait, tonumber(soonest[2]) - now)) end
  return {'wait', wait, 'concurrency'}
end

local cost = tonumber(ARGV[1])
if cost > 0 then
  local interval = 1000 / tonumber(ARGV[2])
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat > now then
    return {'wait', math.ceil(tat - now), 'rate'}
  end
  local next_tat = now + cost * interval
  redis.call('SET', KEYS[1], tostring(next_tat), 'PX', math.ceil(next_tat - now) + 1000)
end

redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[4])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[5]) + 1000)
return {'ok'}
