"""The Lua scripts of the API keys a team's clients use: add, revoke, look up, list.

Apart from the accounting scripts (gateway.store.redis_scripts) because they share nothing
with them: no reservation, no window, no amount; each is a few reads or writes made atomic.
"""

from __future__ import annotations

_ADD_KEY = """
-- KEYS: by_hash, by_id, revoked, version; ARGV: key id, key hash, record, revoked ('1'/'0')
local by_hash, by_id, revoked, version = unpack(KEYS)
local previous = redis.call('HGET', by_id, ARGV[1])
if previous and previous ~= ARGV[2] then redis.call('HDEL', by_hash, previous) end
redis.call('HSET', by_hash, ARGV[2], ARGV[3])
redis.call('HSET', by_id, ARGV[1], ARGV[2])
if ARGV[4] == '1' then redis.call('SADD', revoked, ARGV[1]) else redis.call('SREM', revoked, ARGV[1]) end
return redis.call('INCR', version)
"""

_REVOKE_KEY = """
-- KEYS: by_id, revoked, version; ARGV: key id
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then redis.call('INCR', KEYS[3]) end
return 1
"""

_LOOKUP_KEY = """
-- KEYS: by_hash, revoked; ARGV: key hash. The key's record unless it is revoked, in one round trip.
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return false end
local ok, decoded = pcall(cjson.decode, record)
if not ok or type(decoded) ~= 'table' or redis.call('SISMEMBER', KEYS[2], tostring(decoded.key_id)) == 1 then
  return false
end
return record
"""

_LIST_KEYS = """
-- KEYS: by_hash, revoked
return {redis.call('HVALS', KEYS[1]), redis.call('SMEMBERS', KEYS[2])}
"""

KEY_SCRIPTS = {"add_key": _ADD_KEY, "revoke_key": _REVOKE_KEY, "list_keys": _LIST_KEYS, "lookup_key": _LOOKUP_KEY}
