-- A message status callback: applied once (by MessageSid + MessageStatus),
-- and the stored status never moves backwards, since callbacks arrive out of
-- order.
--
-- KEYS[1] the message            cg:{<sid>}:msg  (hash: status, rank, error_code, updated_at)
-- KEYS[2] this event, for dedupe cg:{<sid>}:ev:<status>
-- ARGV[1] status   ARGV[2] its rank   ARGV[3] error code ('' or a number)
-- ARGV[4] lifetime of both keys, seconds
--
-- Returns {'dup'} (seen before: do nothing), {'stale'} (a new event, but an
-- older status than the stored one), or {'new'}.

if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[4]) then
  return {'dup'}
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local rank = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')
if rank >= tonumber(ARGV[2]) then
  return {'stale'}
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'rank', ARGV[2], 'error_code', ARGV[3],
           'updated_at', tostring(now))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {'new'}
