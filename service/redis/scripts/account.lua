-- The account-wide budget shared by every replica: at most ARGV[2] Twilio
-- requests in flight, and messages spaced so that no more than ARGV[1]
-- segments go out per second. A separate script from send.lua because its
-- keys carry the account's hash tag, not a number's: Redis Cluster cannot
-- run one script over two slots. A replica sends it once per loop turn for
-- every request that turn started (account.c), in the same pipeline as
-- their send.lua, so the decision is still one round trip.
--
-- The rate is GCRA with no burst, as reservations: each message is given
-- the next free slot, now or later, and waits for it on its own timer, so
-- a replica never polls for the rate. Slots are kept in microseconds, so
-- rates far above 1,000/s stay spaced too.
--
-- KEYS[1] next free slot, unix us        cg:{account}:tat_us
-- KEYS[2] leases of requests in flight   cg:{account}:leases (zset, score: expiry in unix ms)
-- KEYS[3] spare slots (optional)         cg:{account}:spare  (zset, score: slot end in
--         unix us, member 'end:cost'): slots given back that were not the last
--         one booked, handed to the next take of the same cost
-- ARGV[1] segments per second
-- ARGV[2] most requests in flight
-- ARGV[3] 'take' or 'give'
--
-- take: ARGV[4] n, then n lease ids that are done (removed first), then per
--       request: lease id, cost in segments (0: not a message, only the
--       concurrency cap), lease lifetime in ms (its deadline: a crashed
--       replica's leases expire on their own), and the longest it may wait
--       for its slot in ms. Returns three elements per request, in order:
--         'ok', ms, slot     go in ms (0: now); the lease is held; slot
--                            names the rate slot, for a give ('0': none)
--         'rate', ms, '0'    its slot is ms away, more than it may wait
--         'concurrency', ms, '0'   all places taken; one frees within ms
-- give: ARGV[4] lease id, ARGV[5] cost, ARGV[6] the slot its take got:
--       hands back what a take got when the request was not sent after all.
--       The lease always. The rate slot: while it is the last one given out,
--       the next free slot moves back over it (and over any spare it then
--       reaches); otherwise moving back would put two sends in one slot, so
--       it becomes a spare that the next take of the same cost gets first.
--       Either way a slot given back is not lost: an idempotent repeat, which
--       takes and gives back, costs the account nothing. Returns {'ok'}.

local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local interval_us = 1000000 / tonumber(ARGV[1])

local function set_tat(tat)
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX',
             math.ceil((tat - now_us) / 1000) + 1000)
end

local spare = KEYS[3]

if ARGV[3] == 'give' then
  redis.call('ZREM', KEYS[2], ARGV[4])
  local cost = tonumber(ARGV[5])
  local slot = tonumber(ARGV[6])
  if cost == 0 or slot <= now_us then return {'ok'} end
  local tat = redis.call('GET', KEYS[1])
  if tat and tat == ARGV[6] then
    local back = slot - cost * interval_us
    -- Spares that end where the free slot now starts are free slots too.
    while spare do
      local s = redis.call('ZRANGEBYSCORE', spare, string.format('%.0f', back),
                           string.format('%.0f', back))
      if not s[1] then break end
      redis.call('ZREM', spare, s[1])
      back = back - tonumber(string.match(s[1], ':(%d+)$')) * interval_us
    end
    set_tat(math.max(now_us, back))
  elseif spare then
    redis.call('ZADD', spare, ARGV[6], ARGV[6] .. ':' .. ARGV[5])
    local ttl = math.ceil((slot - now_us) / 1000) + 1000
    if redis.call('PTTL', spare) < ttl then redis.call('PEXPIRE', spare, ttl) end
  end
  return {'ok'}
end

local n_done = tonumber(ARGV[4])
local i = 5
if n_done > 0 then
  redis.call('ZREM', KEYS[2], unpack(ARGV, i, i + n_done - 1))
  i = i + n_done
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
local in_flight = redis.call('ZCARD', KEYS[2])
local most = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local tat_changed = false
local lease_until = 0
local leases = {}
local out = {}
local soonest_wait

-- The earliest spare slot of this cost that has not started yet, as its
-- end; nil if none.
if spare then
  redis.call('ZREMRANGEBYSCORE', spare, '-inf', string.format('%.0f', now_us))
  -- Usually there is none: one look per batch instead of one per take.
  if redis.call('EXISTS', spare) == 0 then spare = nil end
end
local function spare_for(cost)
  if not spare then return nil end
  local from = string.format('%.0f', now_us + cost * interval_us)
  local s = redis.call('ZRANGEBYSCORE', spare, from, '+inf', 'LIMIT', 0, 16)
  for _, m in ipairs(s) do
    local e, c = string.match(m, '^(%d+):(%d+)$')
    if tonumber(c) == cost then return tonumber(e), m end
  end
  return nil
end

local function concurrency_wait()
  if not soonest_wait then
    soonest_wait = 20
    local soonest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    if soonest[2] then
      soonest_wait = math.max(1, math.min(20, tonumber(soonest[2]) - now_ms))
    end
  end
  return soonest_wait
end

while i <= #ARGV do
  local id, cost = ARGV[i], tonumber(ARGV[i + 1])
  local lease_ms, max_wait = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  i = i + 4
  if in_flight >= most then
    out[#out + 1] = 'concurrency'
    out[#out + 1] = concurrency_wait()
    out[#out + 1] = '0'
  else
    -- A slot less than 1 ms away counts as now: the timer would cost
    -- more than the slack is worth, even at 80 segments/s.
    local delay = 0
    local slot = math.max(tat, now_us)
    local spare_end, spare_member
    if cost > 0 then
      spare_end, spare_member = spare_for(cost)
      if spare_end then
        slot = spare_end - cost * interval_us
      end
      delay = math.floor((slot - now_us) / 1000)
    end
    if delay > max_wait then
      out[#out + 1] = 'rate'
      out[#out + 1] = delay
      out[#out + 1] = '0'
    else
      local given = '0'
      if spare_end then
        redis.call('ZREM', spare, spare_member)
        given = string.format('%.0f', spare_end)
      elseif cost > 0 then
        tat = slot + cost * interval_us
        tat_changed = true
        given = string.format('%.0f', tat)
      end
      local expires = now_ms + delay + lease_ms
      leases[#leases + 1] = expires
      leases[#leases + 1] = id
      lease_until = math.max(lease_until, expires)
      in_flight = in_flight + 1
      out[#out + 1] = 'ok'
      out[#out + 1] = delay
      out[#out + 1] = given
    end
  end
end

if tat_changed then set_tat(tat) end
if #leases > 0 then
  redis.call('ZADD', KEYS[2], unpack(leases))
  if redis.call('PTTL', KEYS[2]) < lease_until - now_ms + 1000 then
    redis.call('PEXPIRE', KEYS[2], lease_until - now_ms + 1000)
  end
end
return out
