-- The unknown outcomes due for resolving, shared by every replica: a sorted
-- set of idempotency record keys by the unix ms they are due. Any replica
-- takes what is due with a lease (its due time pushed forward), so one that
-- dies mid-resolution leaves its entries to the next sweep of another.
-- Records live on other slots: this script never touches them.
--
-- KEYS[1] the queue   cg:{resolve}:queue
-- add:   ARGV[2] member, ARGV[3] due in this many ms (Redis's clock, the
--        one take reads), ARGV[4] 'nx' (keep an
--        earlier entry as it is) or 'set', ARGV[5] lifetime, s. {'ok'}
-- take:  ARGV[2] at most this many, ARGV[3] lease ms. {members...}
-- done:  ARGV[2] member. {'ok'}

local q = KEYS[1]
local op = ARGV[1]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)

if op == 'add' then
  local due = now + tonumber(ARGV[3])
  if ARGV[4] == 'nx' then
    redis.call('ZADD', q, 'NX', due, ARGV[2])
  else
    redis.call('ZADD', q, due, ARGV[2])
  end
  redis.call('EXPIRE', q, ARGV[5])
  return {'ok'}
end

if op == 'take' then
  local due = redis.call('ZRANGEBYSCORE', q, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
  for _, m in ipairs(due) do
    redis.call('ZADD', q, now + tonumber(ARGV[3]), m)
  end
  return due
end

if op == 'done' then
  redis.call('ZREM', q, ARGV[2])
  return {'ok'}
end

return redis.error_reply('resolve_queue.lua: unknown op ' .. tostring(op))
