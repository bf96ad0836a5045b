-- StartVerification's app-level limits, checked and reserved atomically so
-- two concurrent starts cannot both take the last send. The reservation is
-- removed again (ZREM) if Twilio does not send: only successful sends count.
--
-- KEYS[1] recent sends (zset of unix ms)   cg:{<to>}:vsend
-- ARGV[1] most sends per window
-- ARGV[2] window, ms
-- ARGV[3] cool-down between sends, ms
-- ARGV[4] reservation id
--
-- Returns {'ok'} or {'wait', ms, 'limit'|'cooldown'}.

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local window = tonumber(ARGV[2])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local newest = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if newest[2] then
  local ready = tonumber(newest[2]) + tonumber(ARGV[3])
  if ready > now then return {'wait', ready - now, 'cooldown'} end
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {'wait', tonumber(oldest[2]) + window - now, 'limit'}
end

redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return {'ok'}
