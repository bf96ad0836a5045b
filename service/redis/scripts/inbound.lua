-- An inbound SMS or WhatsApp message: applied once per MessageSid; a STOP
-- keyword puts the sender on the opt-out list SendSMS checks, START takes it
-- off; a WhatsApp message opens (or refreshes) the 24-hour window
-- SendWhatsApp checks.
--
-- KEYS[1] this message, for dedupe  cg:{<from>}:in:<MessageSid>
-- KEYS[2] the sender's opt-out      cg:{<from>}:optout
-- KEYS[3] the sender's window       cg:{<from>}:wa
-- ARGV[1] 'stop', 'start' or '' (no opt-out keyword)
-- ARGV[2] '1' for WhatsApp
-- ARGV[3] opt-out lifetime, seconds
-- ARGV[4] window key lifetime, seconds   ARGV[5] dedupe lifetime, seconds
--
-- Returns {'dup'} or {'new'}.

if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[5]) then
  return {'dup'}
end
if ARGV[1] == 'stop' then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
elseif ARGV[1] == 'start' then
  redis.call('DEL', KEYS[2])
end
if ARGV[2] == '1' then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[3], tostring(t[1] * 1000 + math.floor(t[2] / 1000)), 'EX', ARGV[4])
end
return {'new'}
