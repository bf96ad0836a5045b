-- The per-recipient decision for SendSMS, SendWhatsApp and PlaceCall, in one
-- round trip: an idempotent repeat, the opt-out list, the WhatsApp window,
-- and the idempotency claim. Every key shares the recipient's hash tag.
--
-- KEYS[1] opt-out flag        cg:{<to>}:optout
-- KEYS[2] WhatsApp window     cg:{<to>}:wa     (value: last inbound, unix ms)
-- KEYS[3] idempotency record  cg:{<to>}:idem:<rpc>:<caller>:<key>   (optional)
-- ARGV[1] '1' to refuse opted-out recipients
-- ARGV[2] '1' when the message is free-form WhatsApp (needs an open window)
-- ARGV[3] window length, ms
-- ARGV[4] idempotency record lifetime, seconds
-- ARGV[5] request fingerprint (a repeat must be the same request)
--
-- Returns one of:
--   {'ok'}                              go ahead (the key, if any, is claimed)
--   {'repeat', code, body, msg, tw}     the first answer to this key: gRPC
--                                       code, response (code 0) or message,
--                                       Twilio error code
--   {'in_flight'}                       the first request is still running
--   {'mismatch'}                        the key was used for another request
--   {'opted_out'}
--   {'window_closed', closed_at_ms}     0 if the window was never open

if KEYS[3] then
  local rec = redis.call('HMGET', KEYS[3], 'state', 'fp', 'code', 'body', 'msg', 'tw')
  if rec[1] then
    if rec[2] ~= ARGV[5] then return {'mismatch'} end
    if rec[1] == 'done' then
      return {'repeat', rec[3], rec[4] or '', rec[5] or '', rec[6] or '0'}
    end
    return {'in_flight'}
  end
end

if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return {'opted_out'}
end

if ARGV[2] == '1' then
  local last = tonumber(redis.call('GET', KEYS[2]) or '0')
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  local closes = last + tonumber(ARGV[3])
  if last == 0 or closes <= now then
    if last == 0 then closes = 0 end
    return {'window_closed', tostring(closes)}
  end
end

if KEYS[3] then
  redis.call('HSET', KEYS[3], 'state', 'pending', 'fp', ARGV[5])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return {'ok'}
