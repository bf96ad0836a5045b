-- The idempotency record of one key: scoped by caller and key only (not by
-- recipient or RPC), so the same key with any other request is refused. A
-- separate script from send.lua because its key carries the key's hash tag,
-- not the recipient's; it runs in the same pipeline, so the decision is still
-- one round trip.
--
-- KEYS[1] the record   cg:{key:<caller>:<key>}:idem
--         hash: state, fp, owner, lease_until (unix ms), and for resolving
--         an unknown outcome: api (the Twilio list to read), form (the
--         request as sent), t0 (claimed, unix ms), t1 (the last moment
--         Twilio may have received it).
--   state 'pending'  claimed by owner until lease_until
--         'done'     settled with code, body, msg, tw: replayed
--         'unknown'  Twilio may have acted and nobody knows: resolve/ asks
--                    Twilio's lists; until then a repeat hears 'resolving'
--         'found'    resolved: Twilio has it as sid (status)
--   resolved absent: the record is deleted, so the key may send again.
--
-- claim:  ARGV[1] 'claim', ARGV[2] fingerprint of the whole request (RPC
--         included), ARGV[3] owner (the claiming call's id), ARGV[4] lease,
--         ms (the claimer's deadline plus a margin), ARGV[5] lifetime, s,
--         ARGV[6] api ('' if it cannot be resolved), ARGV[7] form.
--   {'ok'}                          claimed: go ahead
--   {'repeat', code, body, msg, tw} the first answer to this key
--   {'found', sid, status}          resolved: Twilio has it
--   {'in_flight', ms}               its holder is still at it (lease ms left)
--   {'resolving'}                   the outcome is being resolved; a claim
--                                   whose holder stopped before settling
--                                   it becomes 'unknown' here
--   {'expired'}                     the same, for a record that cannot be
--                                   resolved (no api): unknown for good
--   {'mismatch'}                    the key was used for another request
-- drop:    ARGV[2] owner: forgets a claim that owner still holds, so a
--          repeat may send (nothing was sent). {'ok'}.
-- unknown: ARGV[2] owner: the owner does not know whether Twilio acted. A
--          'pending' record becomes 'unknown' (t1 now); one already
--          'found' stays so. {'ok'}, or {'gone'} without a record.
-- found:   ARGV[2] sid, ARGV[3] status: Twilio has it. An 'unknown' or
--          abandoned record becomes 'found'; one whose owner may still
--          answer keeps it aside for when it does not; 'done' and 'found'
--          records keep theirs. {'ok'} or {'gone'}.
-- read:    for the resolver: {state ('' without a record), api, form, t0,
--          t1 (for a pending record, its lease end), ms left of the lease}.
-- absent:  ARGV[2] t0 the resolver read: Twilio has nothing; the record is
--          deleted if it is still that unsettled claim. {'ok'} or {'kept'}.

local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local op = ARGV[1]

if op == 'drop' then
  local rec = redis.call('HMGET', KEYS[1], 'state', 'owner')
  if rec[1] == 'pending' and rec[2] == ARGV[2] then redis.call('DEL', KEYS[1]) end
  return {'ok'}
end

if op == 'read' then
  local rec = redis.call('HMGET', KEYS[1], 'state', 'api', 'form', 't0', 't1', 'lease_until')
  local lease = tonumber(rec[6] or '0')
  return {rec[1] or '', rec[2] or '', rec[3] or '', rec[4] or '0', rec[5] or rec[6] or '0',
          tostring(lease - now)}
end

-- A pending record whose status callback came first keeps the SID aside
-- (cb_sid, cb_status): its live owner's answer is the one repeats replay;
-- an owner that ends unknown, or stops, leaves it found.
local function found_from_callback(rec_key)
  local cb = redis.call('HMGET', rec_key, 'cb_sid', 'cb_status')
  if not cb[1] then return false end
  redis.call('HSET', rec_key, 'state', 'found', 'sid', cb[1], 'status', cb[2] or '')
  return true
end

if op == 'unknown' then
  local state = redis.call('HGET', KEYS[1], 'state')
  if not state then return {'gone'} end
  if state == 'pending' and not found_from_callback(KEYS[1]) then
    redis.call('HSET', KEYS[1], 'state', 'unknown', 't1', tostring(now))
  end
  return {'ok'}
end

if op == 'found' then
  local rec = redis.call('HMGET', KEYS[1], 'state', 'lease_until')
  if not rec[1] then return {'gone'} end
  if rec[1] == 'pending' and tonumber(rec[2] or '0') > now then
    redis.call('HSET', KEYS[1], 'cb_sid', ARGV[2], 'cb_status', ARGV[3])
  elseif rec[1] == 'pending' or rec[1] == 'unknown' then
    -- Found once, it stays as found: every repeat gets the same answer.
    redis.call('HSET', KEYS[1], 'state', 'found', 'sid', ARGV[2], 'status', ARGV[3])
  end
  return {'ok'}
end

if op == 'absent' then
  local rec = redis.call('HMGET', KEYS[1], 'state', 't0', 'lease_until')
  local unsettled = rec[1] == 'unknown' or
                    (rec[1] == 'pending' and tonumber(rec[3] or '0') <= now)
  if unsettled and rec[2] == ARGV[2] then
    -- A status callback saw it, whatever the lists say.
    if found_from_callback(KEYS[1]) then return {'kept'} end
    redis.call('DEL', KEYS[1])
    return {'ok'}
  end
  return {'kept'}
end

local rec = redis.call('HMGET', KEYS[1], 'state', 'fp', 'lease_until', 'code', 'body', 'msg',
                       'tw', 'api', 'sid', 'status')
if rec[1] then
  if rec[2] ~= ARGV[2] then return {'mismatch'} end
  local state = rec[1]
  if state == 'done' then
    return {'repeat', rec[4] or '0', rec[5] or '', rec[6] or '', rec[7] or '0'}
  end
  if state == 'found' then return {'found', rec[9] or '', rec[10] or ''} end
  if state == 'pending' then
    local left = tonumber(rec[3] or '0') - now
    if left > 0 then return {'in_flight', tostring(left)} end
    if found_from_callback(KEYS[1]) then
      local f = redis.call('HMGET', KEYS[1], 'sid', 'status')
      return {'found', f[1], f[2] or ''}
    end
    if not rec[8] or rec[8] == '' then return {'expired'} end
    -- Its holder stopped (crashed, hung, lost Redis) before settling it.
    redis.call('HSET', KEYS[1], 'state', 'unknown', 't1', rec[3])
    return {'resolving'}
  end
  if state == 'unknown' then
    if not rec[8] or rec[8] == '' then return {'expired'} end
    return {'resolving'}
  end
  return {'expired'}
end
redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[2], 'owner', ARGV[3],
           'lease_until', tostring(now + tonumber(ARGV[4])), 't0', tostring(now))
if ARGV[6] and ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'api', ARGV[6], 'form', ARGV[7])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {'ok'}
