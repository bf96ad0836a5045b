-- The per-recipient decision for SendSMS, SendWhatsApp and PlaceCall: the
-- opt-out list and the WhatsApp window. Both keys share the recipient's hash
-- tag. (The idempotency record has its own script, idempotency.lua, in the
-- same pipeline.)
--
-- KEYS[1] opt-out flag        cg:{<to>}:optout
-- KEYS[2] WhatsApp window     cg:{<to>}:wa     (value: last inbound, unix ms)
-- ARGV[1] '1' to refuse opted-out recipients
-- ARGV[2] '1' when the message is free-form WhatsApp (needs an open window)
-- ARGV[3] window length, ms
--
-- Returns one of:
--   {'ok'}
--   {'opted_out'}
--   {'window_closed', closed_at_ms}     0 if the window was never open

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

return {'ok'}
