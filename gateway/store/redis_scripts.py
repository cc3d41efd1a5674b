"""The Lua scripts of the Redis store: each multi-key operation is one of them, atomic.

Keys arrive hash-tagged per team (see gateway.store.redis), so each script touches one
Redis Cluster slot; "now" is the server's TIME, so every gateway process agrees.

Settlement is idempotent without a key per request. Settling a live reservation gives its
holds back and deletes it from the `reservations` hash, but leaves its id in
`reservations:expiry`, at its expiry, as a tombstone: an id in the zset with a future
score and not in the hash has been settled, and a second settle records nothing. The
purge that already walks the zset (in admit and spend; at most PURGE_BATCH ids a call,
so a backlog after a burst drains over a few calls instead of stalling Redis) gives back
the holds of expired live reservations and forgets expired tombstones, so what settlement
remembers is bounded by the admissions of the last reservation ttl, and nothing of a
request is left once its reservation's expiry has passed. An id whose time is up or that
is unknown (expired before settlement, purged, never admitted) is recorded, and is
remembered for the time the caller gives, so that a retried settlement is not counted twice.
A release (the gateway gave up waiting for an admission's answer) leaves the same tombstone,
before the admission if need be: an admission finds its id there and reserves nothing.
A lease (gateway.accounting.leases) is a reservation of several requests' worst cases; a
request admitted from it has no entry until its settlement, which moves what it used out of
the lease's holds and leaves the request's own tombstone.

Every amount is checked before a script's first write (a script that fails half-way keeps
its writes), and a corrupt reservation or held sum is dropped and logged, not left to make
every later call of the team fail.
Rolling upgrade from the `settled:<id>` marker: both versions keep reservations alike;
only an id settled once by each version would be recorded twice, and the old markers
expire by themselves within their 24 h.

TTLs still bound every key, but are not re-issued on every call, and nothing needs
Redis 7 (no EXPIRE NX/GT; any Redis >= 5 runs these scripts):
  - keys whose content rolls (rpm, tpm, tpm:total, reservations, reservations:expiry,
    held) are read with PTTL (a read: neither replicated nor appended to the AOF) and
    re-expired, to twice what the call needs, only when less than that is left: a busy
    key gets one PEXPIRE per period instead of one per call (a key made again because
    it had emptied, as reservations and held are whenever a team has nothing in flight,
    still needs its one). Where the script already asked whether a key exists (the tpm
    log) or knows it was just made (an rpm log emptied by its trim), that answer serves.
    held gets no later deadline than reservations and its expiry zset, so it never
    outlives the reservations it sums;
  - usage keys (day, month, records) get their TTL when the day's hash is created (a route's
    "requests" HINCRBY answers what it added) and the month's counter when it is (INCRBY answers the
    amount added): a day's keys are written during that day, so they outlive their last
    write by the usage ttl less at most a day. A usage ttl under
    gateway.store.redis_settlement_script.REFRESH_MIN_S
    falls back to refreshing them on every call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gateway.store.redis_admission_scripts import ADMISSION_SCRIPTS
from gateway.store.redis_key_scripts import KEY_SCRIPTS
from gateway.store.redis_settlement_script import SETTLE
from gateway.store.windows import WINDOW_MS

PURGE_BATCH = 1_000  # most expired ids one call purges, so a backlog never blocks Redis long

_COMMON = """
local WINDOW = %(window)d
local PURGE_BATCH = %(batch)d

local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function num(value)
  return tonumber(value) or 0
end

-- An amount as the gateway sends it: decimal digits, exact in a double (at most 2^53 - 1).
local function amount(value)
  return string.match(value, '^%%d+$') ~= nil and #value <= 16 and tonumber(value) <= 9007199254740991
end

-- Refuse the call before its first write unless every named argument is an amount ('' allowed where
-- `optional`): a script that fails half-way leaves its writes behind.
local function check_amounts(names, optional)
  for i, value in pairs(names) do
    if not (amount(value) or (optional and value == '')) then
      return redis.error_reply('gateway: argument ' .. i .. ' is not an amount: ' .. string.sub(value, 1, 32))
    end
  end
  return nil
end

-- Held sums must be integers for HINCRBY: a corrupt one is dropped and logged, not left to wedge the team.
local function sane(held, fields)
  local values = redis.call('HMGET', held, unpack(fields))
  for i = 1, #fields do
    local value = values[i]
    if value and not string.match(value, '^%%-?%%d+$') then
      redis.log(redis.LOG_WARNING, 'gateway: dropped corrupt held sum ' .. held .. ' ' .. fields[i] .. '=' .. value)
      redis.call('HDEL', held, fields[i])
    end
  end
end

-- Amounts travel as strings: Lua prints numbers past 14 digits as 1e+14.
local function hold(held, field, amount)
  if amount ~= '0' then redis.call('HINCRBY', held, field, amount) end
end

local function unhold(held, field, amount)
  if amount ~= '0' and redis.call('HINCRBY', held, field, '-' .. amount) <= 0 then
    redis.call('HDEL', held, field)
  end
end

-- Give back the holds of a reservation, from its "tokens|cost|day|month" value. A value of any
-- other form (corrupted by hand or by another program) holds nothing: it is only logged.
local function unhold_all(held, r)
  local tokens, cost, day, month = string.match(r, '^(%%d+)|(%%d+)|([^|]*)|([^|]*)$')
  if not tokens then
    redis.log(redis.LOG_WARNING, 'gateway: dropped corrupt reservation of ' .. held .. ': ' .. string.sub(r, 1, 64))
    return
  end
  sane(held, {'tokens', 'd:' .. day, 'm:' .. month})
  unhold(held, 'tokens', tokens)
  unhold(held, 'd:' .. day, cost)
  unhold(held, 'm:' .. month, cost)
end

-- Make `key` live at least `need` ms more; re-expire (to twice that) only when it would not.
-- Returns the ms it has left.
local function keep(key, need)
  local left = redis.call('PTTL', key)
  if left >= need then return left end
  redis.call('PEXPIRE', key, 2 * need)
  return 2 * need
end

-- Ids whose time is up leave the expiry zset: a live reservation (left by a gateway that
-- died mid-request) gives its holds back; a tombstone (settled) is simply forgotten.
-- At most PURGE_BATCH per call, lowest expiry first; a backlog drains over the next calls.
local function purge(reservations, expiry, held, now)
  local due = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'LIMIT', 0, PURGE_BATCH)
  if #due == 0 then return end
  local found = redis.call('HMGET', reservations, unpack(due))
  for i = 1, #due do
    if found[i] then
      unhold_all(held, found[i])
      redis.call('HDEL', reservations, due[i])
    end
  end
  -- The due ids are exactly the lowest-ranked ones.
  redis.call('ZREMRANGEBYRANK', expiry, 0, #due - 1)
end

local function logged_tokens(member)
  return tonumber(string.match(member, ':(%%d+)$')) or 0
end

-- Drop settled tokens older than the window; returns what is left in it, and the log's
-- PTTL (-2 when the log does not exist).
local function window_tokens(log, total, now)
  local cutoff = now - WINDOW
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff)
  if #old > 0 then
    local gone = 0
    for _, member in ipairs(old) do gone = gone + logged_tokens(member) end
    redis.call('ZREMRANGEBYSCORE', log, '-inf', cutoff)
    redis.call('DECRBY', total, string.format('%%d', gone))
  end
  local pttl = redis.call('PTTL', log)
  if pttl == -2 then
    redis.call('DEL', total)
    return 0, pttl
  end
  return num(redis.call('GET', total)), pttl
end
""" % {"window": WINDOW_MS, "batch": PURGE_BATCH}

_SPEND = """
-- KEYS: reservations, reservations:expiry, held, day:<day>, month:<month>; ARGV: day, month
local reservations, expiry, held, day_usage, month_spend = unpack(KEYS)
purge(reservations, expiry, held, clock_ms())
return {
  num(redis.call('HGET', day_usage, 'cost_nano')) + num(redis.call('HGET', held, 'd:' .. ARGV[1])),
  num(redis.call('GET', month_spend)) + num(redis.call('HGET', held, 'm:' .. ARGV[2])),
}
"""

@dataclass(frozen=True, slots=True)
class _Script:
    source: bytes
    sha: str

    @classmethod
    def of(cls, body: str, *, common: bool = True) -> _Script:
        source = ((_COMMON if common else "") + body).encode()
        return cls(source, hashlib.sha1(source).hexdigest())


SCRIPTS = {
    **{name: _Script.of(body) for name, body in ADMISSION_SCRIPTS.items()},
    "settle": _Script.of(SETTLE),
    "spend": _Script.of(_SPEND),
    **{name: _Script.of(body, common=False) for name, body in KEY_SCRIPTS.items()},
}
