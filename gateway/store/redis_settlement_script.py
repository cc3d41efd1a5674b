"""The Lua script of settlement: the settlements of one team and period, as one call.

It runs after gateway.store.redis_scripts' common functions, whose module docstring says how
reservations, tombstones and TTLs work. The gateway sends the settlements of one loop turn
together (gateway.store.redis_settlements): each is decided on its own (recorded, or settled
already), and when all of them are recorded, as nearly always, the day's and month's totals
are written once, from sums the gateway made, instead of once per request. Sums stay exact:
the gateway keeps each at most 2^53 - 1, and the lease arithmetic here never exceeds the
lease's own holds.
"""

from __future__ import annotations

REFRESH_MIN_S = 2 * 86_400  # below this usage ttl, day/month/records TTLs are refreshed per call

SETTLE = """
-- KEYS: tpm, tpm:total, reservations, reservations:expiry, held, day:<day>, month:<month>, records
-- ARGV: max records, usage ttl s, log id, settlements n, routes n, tokens (all), cost (all);
--   per route (6): "model|provider", requests, prompt tokens, completion tokens, cost, provider cost
--     ('' when none of them had one);
--   per settlement (10): reservation id, tokens, cost, provider cost ('' if unknown), prompt tokens,
--     completion tokens, route (its number above), record, remember ms, the lease it was admitted
--     from ('' when its own reservation)
-- Answers one number per settlement: 1 recorded, 0 settled already.
local tpm_log, tpm_total, reservations, expiry, held, day_usage, month_spend, records = unpack(KEYS)
local usage_ttl, log_id, count, route_count = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local ROUTE, ITEM = 6, 10
local first_route = 8
local first_item = first_route + route_count * ROUTE

local bad = check_amounts({ARGV[1], usage_ttl, ARGV[4], ARGV[5], ARGV[6], ARGV[7]})
if bad then return bad end
for r = 0, route_count - 1 do
  local b = first_route + r * ROUTE
  bad = check_amounts({ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]})
    or check_amounts({ARGV[b + 5]}, true)
  if bad then return bad end
end
for i = 0, count - 1 do
  local b = first_item + i * ITEM
  bad = check_amounts({ARGV[b + 1], ARGV[b + 2], ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 8]})
    or check_amounts({ARGV[b + 3]}, true)
  if bad then return bad end
end
local now = clock_ms()

-- A lease's holds, drawn down by the requests admitted from it, written back once.
local leases, lease_order = {}, {}
local function draw(lease, tokens, cost)
  local l = leases[lease]
  if not l then
    l = {}
    local r = redis.call('HGET', reservations, lease)
    if r then
      local t, c, day, month = string.match(r, '^(%%d+)|(%%d+)|([^|]*)|([^|]*)$')
      if t then l = {tokens = tonumber(t), cost = tonumber(c), day = day, month = month, used_tokens = 0, used_cost = 0} end
    end
    leases[lease] = l
    table.insert(lease_order, lease)
  end
  if l.tokens then
    local used_tokens, used_cost = math.min(tonumber(tokens), l.tokens), math.min(tonumber(cost), l.cost)
    l.tokens, l.cost = l.tokens - used_tokens, l.cost - used_cost
    l.used_tokens, l.used_cost = l.used_tokens + used_tokens, l.used_cost + used_cost
  end
end

-- Each settlement on its own. No purge here (admit and spend purge before they count holds): the
-- answer depends only on the id's own entry. In the expiry zset with a future score, it is live (in
-- the hash) or settled (a tombstone); with a past score, or absent, its time is up (or it was never
-- admitted here): it is recorded and remembered a while more, so a retry is not counted twice. A
-- request admitted from a lease is known here only once settled (its tombstone).
local answers, taken, tombstones, remember = {}, {}, {}, 0
local all = true
for i = 1, count do
  local b = first_item + (i - 1) * ITEM
  local id, lease = ARGV[b], ARGV[b + 9]
  local expires = redis.call('ZSCORE', expiry, id)
  local live = expires and tonumber(expires) > now
  local recorded = false
  if taken[id] then
    recorded = false  -- twice in one call (a retry beside the first try): once
  elseif lease ~= '' then
    recorded = not live
    if recorded then draw(lease, ARGV[b + 1], ARGV[b + 2]) end
  else
    local r = redis.call('HGET', reservations, id)
    if r then
      -- Live (or expired but not purged yet): give its holds back; its id stays as the tombstone.
      unhold_all(held, r)
      redis.call('HDEL', reservations, id)
    end
    recorded = r ~= false or not live
  end
  if recorded then
    taken[id] = true
    if not live then
      local ms = tonumber(ARGV[b + 8])
      table.insert(tombstones, now + ms)
      table.insert(tombstones, id)
      remember = math.max(remember, ms)
    end
  end
  answers[i] = recorded and 1 or 0
  all = all and recorded
end
if #tombstones > 0 then
  redis.call('ZADD', expiry, unpack(tombstones))
  keep(expiry, remember)
end
for _, lease in ipairs(lease_order) do
  local l = leases[lease]
  if l.tokens then
    redis.call('HSET', reservations, lease, string.format('%%d|%%d|%%s|%%s', l.tokens, l.cost, l.day, l.month))
    sane(held, {'tokens', 'd:' .. l.day, 'm:' .. l.month})
    unhold(held, 'tokens', string.format('%%d', l.used_tokens))
    unhold(held, 'd:' .. l.day, string.format('%%d', l.used_cost))
    unhold(held, 'm:' .. l.month, string.format('%%d', l.used_cost))
  end
end

-- Usage: the first request of a route in a day gives the usage keys their TTL (the day's
-- first creates the hash); the month's counter gets its own when its INCRBY makes it.
local refresh = tonumber(usage_ttl) < %(refresh_min)d
local month_made = false

local function add_tokens(member, tokens)
  if tokens == '0' then return end
  -- Admission trims the window before it counts it; here only the TTL matters. A log gone
  -- (expired or emptied) takes its total with it; the two are re-expired together.
  local pttl = redis.call('PTTL', tpm_log)
  if pttl == -2 then redis.call('DEL', tpm_total) end
  redis.call('ZADD', tpm_log, now, member .. ':' .. tokens)
  redis.call('INCRBY', tpm_total, tokens)
  if pttl < WINDOW then
    redis.call('PEXPIRE', tpm_log, 2 * WINDOW)
    redis.call('PEXPIRE', tpm_total, 2 * WINDOW)
  end
end

-- A day's totals are the sums of its routes' (the reader adds them up), but for cost_nano,
-- which admission reads against the day's budget.
local function add_route(route, requests, prompt, completion, cost, provider_cost)
  if redis.call('HINCRBY', day_usage, 'requests@' .. route, requests) == tonumber(requests) then refresh = true end
  local totals = {prompt_tokens = prompt, completion_tokens = completion, cost_nano = cost}
  if provider_cost ~= '' then totals.provider_cost_nano = provider_cost end
  for name, amount in pairs(totals) do
    if amount ~= '0' then redis.call('HINCRBY', day_usage, name .. '@' .. route, amount) end
  end
end

local function add_cost(cost)
  if cost == '0' then return end
  redis.call('HINCRBY', day_usage, 'cost_nano', cost)
  if redis.call('INCRBY', month_spend, cost) == tonumber(cost) then month_made = true end
end

if all then
  add_tokens(log_id, ARGV[6])
  for r = 0, route_count - 1 do
    local b = first_route + r * ROUTE
    add_route(ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5])
  end
  add_cost(ARGV[7])
else
  for i = 1, count do
    if answers[i] == 1 then
      local b = first_item + (i - 1) * ITEM
      add_tokens(log_id .. '.' .. i, ARGV[b + 1])
      add_route(ARGV[first_route + (tonumber(ARGV[b + 6]) - 1) * ROUTE], '1', ARGV[b + 4], ARGV[b + 5],
                ARGV[b + 2], ARGV[b + 3])
      add_cost(ARGV[b + 2])
    end
  end
end
for i = 1, count do
  if answers[i] == 1 then
    redis.call('XADD', records, 'MAXLEN', '~', ARGV[1], '*', 'r', ARGV[first_item + (i - 1) * ITEM + 7])
  end
end
if refresh then
  redis.call('EXPIRE', day_usage, usage_ttl)
  redis.call('EXPIRE', records, usage_ttl)
end
if refresh or month_made then redis.call('EXPIRE', month_spend, usage_ttl) end
return answers
""" % {"refresh_min": REFRESH_MIN_S}
