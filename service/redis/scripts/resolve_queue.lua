-- The unknown outcomes due for resolving, shared by every replica: a sorted
-- set of idempotency record keys by the unix ms they are due. Any replica
-- takes what is due with a lease (its due time pushed forward), so one that
-- dies mid-resolution leaves its entries to the next sweep of another.
-- Records live on other slots: this script never touches them.
--
-- KEYS[1] the queue   cg:{resolve}:queue
-- batch: ARGV[2] lifetime, s; then triples, applied in order:
--        'set' | 'nx' (keep an earlier entry as it is), member, due in ms
--        (Redis's clock, the one take reads); or 'done', member, ''.
--        {'ok'}
-- take:  ARGV[2] at most this many, ARGV[3] lease ms. {members...}

local q = KEYS[1]
local op = ARGV[1]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)

if op == 'batch' then
  local added = false
  for i = 3, #ARGV, 3 do
    local kind, member = ARGV[i], ARGV[i + 1]
    if kind == 'done' then
      redis.call('ZREM', q, member)
    else
      local due = now + tonumber(ARGV[i + 2])
      if kind == 'nx' then
        redis.call('ZADD', q, 'NX', due, member)
      else
        redis.call('ZADD', q, due, member)
      end
      added = true
    end
  end
  if added then redis.call('EXPIRE', q, ARGV[2]) end
  return {'ok'}
end

if op == 'take' then
  local due = redis.call('ZRANGEBYSCORE', q, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
  for _, m in ipairs(due) do
    redis.call('ZADD', q, now + tonumber(ARGV[3]), m)
  end
  return due
end

return redis.error_reply('resolve_queue.lua: unknown op ' .. tostring(op))
