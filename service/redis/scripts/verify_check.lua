-- CheckVerification's brute-force limit: every check counts, whatever its
-- outcome, so it is counted before Twilio is asked.
--
-- KEYS[1] recent checks (zset of unix ms)   cg:{<to>}:vcheck
-- ARGV[1] most checks per window
-- ARGV[2] window, ms
-- ARGV[3] check id
--
-- Returns {'ok'} or {'wait', ms, 'limit'}.

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local window = tonumber(ARGV[2])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {'wait', tonumber(oldest[2]) + window - now, 'limit'}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {'ok'}
