-- The idempotency record of one key: scoped by caller and key only (not by
-- recipient or RPC), so the same key with any other request is refused. A
-- separate script from send.lua because its key carries the key's hash tag,
-- not the recipient's; it runs in the same pipeline, so the decision is still
-- one round trip.
--
-- KEYS[1] the record   cg:{key:<caller>:<key>}:idem
--         hash: state ('pending' | 'done'), fp, owner, lease_until (unix ms),
--         and once done: code, body, msg, tw
--
-- claim:  ARGV[1] 'claim', ARGV[2] fingerprint of the whole request (RPC
--         included), ARGV[3] owner (the claiming call's id), ARGV[4] lease,
--         ms (the claimer's deadline plus a margin), ARGV[5] lifetime, s.
--   {'ok'}                          claimed: go ahead
--   {'repeat', code, body, msg, tw} the first answer to this key
--   {'in_flight', ms}               its holder is still at it (lease ms left)
--   {'expired'}                     its holder stopped before settling it:
--                                   the outcome is unknown, never re-sent
--   {'mismatch'}                    the key was used for another request
-- drop:   ARGV[1] 'drop', ARGV[2] owner: forgets a claim that owner still
--         holds, so a repeat may send (nothing was sent). {'ok'}.

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)

if ARGV[1] == 'drop' then
  local rec = redis.call('HMGET', KEYS[1], 'state', 'owner')
  if rec[1] == 'pending' and rec[2] == ARGV[2] then redis.call('DEL', KEYS[1]) end
  return {'ok'}
end

local rec = redis.call('HMGET', KEYS[1], 'state', 'fp', 'lease_until', 'code', 'body', 'msg', 'tw')
if rec[1] then
  if rec[2] ~= ARGV[2] then return {'mismatch'} end
  if rec[1] == 'done' then
    return {'repeat', rec[4] or '0', rec[5] or '', rec[6] or '', rec[7] or '0'}
  end
  local left = tonumber(rec[3] or '0') - now
  if left <= 0 then return {'expired'} end
  return {'in_flight', tostring(left)}
end
redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[2], 'owner', ARGV[3],
           'lease_until', tostring(now + tonumber(ARGV[4])))
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {'ok'}
