"""The Lua scripts of admission: a request's reservation or a lease (admit), and giving one back (release).

They run after gateway.store.redis_scripts' common functions (the purge, the tpm window,
holds and TTLs), whose module docstring says how reservations, tombstones and TTLs work.
"""

from __future__ import annotations

_ADMIT = """
-- KEYS: rpm, tpm, tpm:total, reservations, reservations:expiry, held, day:<day>, month:<month>
-- ARGV: id, tokens, cost, day, month, ttl ms, rpm, tpm, budget day, budget month,
--       day end ms, month end ms, retry ms while held, the least tokens a tpm hold may shrink to
--       ('' when it may not: the request named its max_tokens) (limits are '' when unlimited),
--       and for a lease ('' when none is asked for): its slots, tokens, cost, life ms, and '1' when
--       only the lease will do (no single reservation instead)
local rpm_log, tpm_log, tpm_total, reservations, expiry, held, day_usage, month_spend = unpack(KEYS)
local id, tokens_s, cost_s, day, month = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local bad = check_amounts({tokens_s, cost_s, ARGV[6]})
  or check_amounts({ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[15] or '', ARGV[16] or '', ARGV[17] or '',
                    ARGV[18] or ''}, true)
if bad then return bad end
local tokens, cost, ttl = tonumber(tokens_s), tonumber(cost_s), tonumber(ARGV[6])
local rpm, tpm = tonumber(ARGV[7]), tonumber(ARGV[8])
local budget_day, budget_month = tonumber(ARGV[9]), tonumber(ARGV[10])
local now = clock_ms()

purge(reservations, expiry, held, now)
-- The id is the gateway's: admitted already (a retry) holds nothing more; released or settled
-- already (the gateway gave up waiting for this very call) reserves nothing.
if redis.call('ZSCORE', expiry, id) then
  if redis.call('HEXISTS', reservations, id) == 1 then return {1, '', 0, -1, -1, 0} end
  return {0, 'released', 0, 0, 0, 0}
end
sane(held, {'tokens', 'd:' .. day, 'm:' .. month})
redis.call('ZREMRANGEBYSCORE', rpm_log, '-inf', now - WINDOW)
local requests = redis.call('ZCARD', rpm_log)
local counted = window_tokens(tpm_log, tpm_total, now) + num(redis.call('HGET', held, 'tokens'))

if rpm and requests + 1 > rpm then
  if rpm < 1 then return {0, 'rpm', WINDOW, requests, 0, 0} end
  -- One more fits once the oldest (requests + 1 - rpm) have left the window.
  local leaving = redis.call('ZRANGE', rpm_log, requests - rpm, requests - rpm, 'WITHSCORES')
  return {0, 'rpm', tonumber(leaving[2]) + WINDOW - now, requests, 0, 0}
end
local floor = tonumber(ARGV[14])
if tpm and floor and counted + tokens > tpm then
  -- tpm is a rate, not money: an output nobody capped holds what the minute has left.
  tokens = math.max(floor, tpm - counted)
  tokens_s = string.format('%d', tokens)
end
if tpm and counted + tokens > tpm then
  if tokens > tpm then return {0, 'tpm', WINDOW, 0, counted, 0} end
  -- Walk the window from its oldest entry until enough tokens would have left it.
  local excess, freed, at = counted + tokens - tpm, 0, now - WINDOW
  local entries = redis.call('ZRANGE', tpm_log, 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    freed = freed + logged_tokens(entries[i])
    at = tonumber(entries[i + 1])
    if freed >= excess then break end
  end
  return {0, 'tpm', at + WINDOW - now, 0, counted, 0}
end
-- A budget refuses for good when what is spent leaves no room; while only requests in flight
-- are in the way, it refuses for a moment (they settle, usually for less than they hold).
local function over(name, spent, in_flight, budget, until_ms)
  if spent + cost > budget then return {0, name, until_ms, 0, 0, 0} end
  if spent + in_flight + cost > budget then return {0, name .. '_held', tonumber(ARGV[13]), 0, 0, 0} end
  return nil
end
local day_used, month_used = 0, 0  -- spent and held, for a lease's headroom
if budget_day then
  local spent, in_flight = num(redis.call('HGET', day_usage, 'cost_nano')), num(redis.call('HGET', held, 'd:' .. day))
  local refused = over('budget_day', spent, in_flight, budget_day, tonumber(ARGV[11]) - now)
  if refused then return refused end
  day_used = spent + in_flight
end
if budget_month then
  local spent, in_flight = num(redis.call('GET', month_spend)), num(redis.call('HGET', held, 'm:' .. month))
  local refused = over('budget_month', spent, in_flight, budget_month, tonumber(ARGV[12]) - now)
  if refused then return refused end
  month_used = spent + in_flight
end

-- A lease: `slots` admissions and their tokens and cost, held at once, that the gateway hands out
-- without asking again. Granted only while the team, lease included, stays within half of every
-- limit, so that near a limit every request is decided here, one by one, as before.
local slots, life = 1, 0
local lease_slots = tonumber(ARGV[15] or '')
if lease_slots and lease_slots >= 1 then
  local lease_tokens, lease_cost = tonumber(ARGV[16]), tonumber(ARGV[17])
  local function roomy(used, limit) return not limit or 2 * used <= limit end
  if tokens_s == ARGV[2] and roomy(requests + lease_slots, rpm) and roomy(counted + lease_tokens, tpm)
      and roomy(day_used + lease_cost, budget_day) and roomy(month_used + lease_cost, budget_month) then
    slots, life, tokens, tokens_s, cost_s = lease_slots, tonumber(ARGV[18]), lease_tokens, ARGV[16], ARGV[17]
  elseif ARGV[19] == '1' then
    return {0, 'lease', 0, requests, counted, 0}
  end
end

-- A lease's requests count in the rpm window from now to the end of its life (their scores are
-- that end), so every window in which one of them may run counts it.
if slots == 1 then
  redis.call('ZADD', rpm_log, now, id)
else
  local members = {}
  for i = 1, slots do
    members[2 * i - 1] = now + life
    members[2 * i] = i == 1 and id or id .. ':' .. i
  end
  redis.call('ZADD', rpm_log, unpack(members))
end
-- An empty log was deleted by the trim: the one just made has no TTL yet.
if requests == 0 then redis.call('PEXPIRE', rpm_log, 2 * (WINDOW + life)) else keep(rpm_log, WINDOW + life) end
ttl = ttl + life
redis.call('HSET', reservations, id, tokens_s .. '|' .. cost_s .. '|' .. day .. '|' .. month)
redis.call('ZADD', expiry, now + ttl, id)
hold(held, 'tokens', tokens_s)
hold(held, 'd:' .. day, cost_s)
hold(held, 'm:' .. month, cost_s)
-- The three keys outlive this reservation's expiry by at least a window. held, when it needs
-- a TTL, gets no later deadline than the two it sums, so it never outlives them.
local left = math.min(keep(reservations, ttl + WINDOW), keep(expiry, ttl + WINDOW))
local held_left = redis.call('PTTL', held)
if held_left ~= -2 and held_left < ttl + WINDOW then redis.call('PEXPIRE', held, left) end
local reset = 0
local newest = redis.call('ZRANGE', tpm_log, -1, -1, 'WITHSCORES')
if #newest > 0 then reset = tonumber(newest[2]) + WINDOW - now end
return {1, '', 0, requests + slots, counted + tokens, reset, slots}
"""

_RELEASE = """
-- KEYS: rpm, reservations, reservations:expiry, held; ARGV: id, ttl ms, and for a lease the
-- first and last of its slots nobody used (none given: the one slot of a single reservation)
-- A reservation the gateway gave up on, or a lease it is done with: what it still holds goes
-- back and its unused requests leave the rpm window, with no record. Its id stays in the
-- expiry zset as a tombstone, put there first if the admission has not run yet, so that it
-- reserves nothing when it does.
local rpm_log, reservations, expiry, held = unpack(KEYS)
local id = ARGV[1]
local bad = check_amounts({ARGV[2], ARGV[3] or '1', ARGV[4] or '1'})
if bad then return bad end
local r = redis.call('HGET', reservations, id)
if r then
  unhold_all(held, r)
  redis.call('HDEL', reservations, id)
  local unused = {}
  for i = tonumber(ARGV[3] or '1'), math.min(tonumber(ARGV[4] or '1'), 10000) do
    unused[#unused + 1] = i == 1 and id or id .. ':' .. i
  end
  if #unused > 0 then redis.call('ZREM', rpm_log, unpack(unused)) end
  return 1
end
if not redis.call('ZSCORE', expiry, id) then
  redis.call('ZADD', expiry, clock_ms() + tonumber(ARGV[2]), id)
  keep(expiry, tonumber(ARGV[2]))
end
return 0
"""

ADMISSION_SCRIPTS = {"admit": _ADMIT, "release": _RELEASE}
