-- A caller's own quotas (the callers file), checked and reserved together
-- so two replicas cannot both take a caller's last place. Each quota is at
-- most N in a sliding window; a reservation is removed again (ZREM) if
-- Twilio did not send: only what was sent counts.
--
-- KEYS[i]     one zset of reservations (unix ms) per quota   cg:{caller:<name>}:q:<quota>
-- ARGV[1]     reservation id
-- ARGV[3i-1]  most per window, ARGV[3i] window ms, ARGV[3i+1] the quota's name
--
-- Returns {'ok'} or {'wait', ms, name} for the first quota that is spent.

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)

for i = 1, #KEYS do
  local most, window = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= most then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    return {'wait', tonumber(oldest[2]) + window - now, ARGV[3 * i + 1]}
  end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3 * i]))
end
return {'ok'}
