"""The Lua scripts of the Redis stores, one constant each, with what their keys and arguments are.

The scripts for one Redis touch a record and its user's SET together (the SET's key is built
from the record, which only one server allows); the ``CLUSTER_`` scripts touch exactly one key
each, and the order of the steps between them keeps the contract (see :mod:`._cluster`).

.. versionadded:: 0.2
"""

from __future__ import annotations

__all__ = ['CLUSTER_DELETE', 'CLUSTER_HEADER', 'CLUSTER_INDEX_ADD', 'CLUSTER_INDEX_DROP_SEEN', 'CLUSTER_INDEX_LEFT', 'CLUSTER_INDEX_STRETCH', 'CLUSTER_PUBLISH', 'CLUSTER_REVOKE', 'CLUSTER_SET', 'CLUSTER_TOUCH', 'CREATE', 'DELETE', 'DELETE_FOR_USER', 'HEADER', 'PRUNE', 'RELEASE', 'SET', 'TOUCH']

# Every script that reads a record parses only its header line; a value this store did not
# write (no "K1" header) counts as no record.  `lengths` is kept verbatim for touch's rewrite.
HEADER = """
local function header(stored)
  if not stored then return nil end
  local version, created, updated, expires, user_length, key_length, rest =
    string.match(stored, '^K1 (%S+) (%S+) (%S+) (%S+) (%d+) (%d+)\\n()')
  if not version then return nil end
  return {version = version, created = created, expires = expires, rest = rest,
          lengths = user_length .. ' ' .. key_length,
          user = string.sub(stored, rest, rest + tonumber(user_length) - 1)}
end
"""

# KEYS[1] record, KEYS[2] (optional) user set; ARGV[1] ttl, ARGV[2] member, ARGV[3] value
CREATE = """
if not redis.call('SET', KEYS[1], ARGV[3], 'NX', 'EX', ARGV[1]) then return 0 end
if #KEYS > 1 then
  redis.call('SADD', KEYS[2], ARGV[2])
  if redis.call('TTL', KEYS[2]) < tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
end
return 1
"""

# KEYS[1] record; ARGV[1] expected version, ARGV[2] ttl, ARGV[3] member, ARGV[4] user-set prefix,
# ARGV[5] new user index key ('' = anonymous), ARGV[6] value, ARGV[7] '1' to leave a user change
# undone (3) for a write followed by WAIT.  0 missing, 1 conflict, 2 saved.
SET = HEADER + """
local stored = header(redis.call('GET', KEYS[1]))
if not stored then return 0 end
if stored.version ~= ARGV[1] then return 1 end
if ARGV[7] == '1' and stored.user ~= ARGV[5] then return 3 end
redis.call('SET', KEYS[1], ARGV[6], 'EX', ARGV[2])
local old = stored.user
if old ~= ARGV[5] and old ~= '' then redis.call('SREM', ARGV[4] .. old, ARGV[3]) end
if ARGV[5] ~= '' then
  local users = ARGV[4] .. ARGV[5]
  redis.call('SADD', users, ARGV[3])
  if redis.call('TTL', users) < tonumber(ARGV[2]) then redis.call('EXPIRE', users, ARGV[2]) end
end
return 2
"""

# KEYS[1] record; ARGV[1] updated_at, ARGV[2] expires_at, ARGV[3] ttl, ARGV[4] user-set prefix.
# Rewrites the header's two times and keeps everything after it byte for byte.
TOUCH = HEADER + """
local value = redis.call('GET', KEYS[1])
local stored = header(value)
if not stored then return 0 end
redis.call('SET', KEYS[1], 'K1 ' .. stored.version .. ' ' .. stored.created .. ' ' .. ARGV[1] .. ' ' ..
           ARGV[2] .. ' ' .. stored.lengths .. '\\n' .. string.sub(value, stored.rest), 'EX', ARGV[3])
if stored.user ~= '' then
  local users = ARGV[4] .. stored.user
  if redis.call('TTL', users) < tonumber(ARGV[3]) then redis.call('EXPIRE', users, ARGV[3]) end
end
return 1
"""

# KEYS[1] record; ARGV[1] user-set prefix, ARGV[2] member, ARGV[3] only if expires_at <= this ('' = always)
DELETE = HEADER + """
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local stored = header(value)
if ARGV[3] ~= '' and (not stored or tonumber(stored.expires) > tonumber(ARGV[3])) then return 0 end
redis.call('DEL', KEYS[1])
if stored and stored.user ~= '' then redis.call('SREM', ARGV[1] .. stored.user, ARGV[2]) end
return 1
"""

# KEYS[1] user set; ARGV[1] record prefix, ARGV[2] user index key, ARGV[3] member to keep ('' = none),
# ARGV[4] batch size (at least 2, so a batch that draws the kept member still makes progress).
# Returns {removed, members left but the kept one}: the caller repeats while some are left.
DELETE_FOR_USER = HEADER + """
local removed = 0
for _, member in ipairs(redis.call('SRANDMEMBER', KEYS[1], tonumber(ARGV[4]))) do
  if member ~= ARGV[3] then
    local record = ARGV[1] .. member
    local stored = header(redis.call('GET', record))
    if stored and stored.user == ARGV[2] then removed = removed + redis.call('DEL', record) end
    redis.call('SREM', KEYS[1], member)
  end
end
local left = redis.call('SCARD', KEYS[1])
if ARGV[3] ~= '' and redis.call('SISMEMBER', KEYS[1], ARGV[3]) == 1 then left = left - 1 end
return {removed, left}
"""

# KEYS[1] user set; ARGV[1] record prefix, ARGV[2] user index key, ARGV[3...] the members to check
# (at most BATCH, so one call's work is bounded): drop those whose record is gone or now someone else's.
PRUNE = HEADER + """
local pruned = 0
for i = 3, #ARGV do
  local stored = header(redis.call('GET', ARGV[1] .. ARGV[i]))
  if not stored or stored.user ~= ARGV[2] then
    pruned = pruned + redis.call('SREM', KEYS[1], ARGV[i])
  end
end
return pruned
"""

# KEYS[1] lock; ARGV[1] token
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# -- Redis Cluster: every script touches KEYS[1] only ------------------------------------

# A record's header, pending ('P1') or live ('K1').
CLUSTER_HEADER = """
local function header(stored)
  if not stored then return nil end
  local tag, version, created, updated, expires, user_length, key_length, rest =
    string.match(stored, '^([KP])1 (%S+) (%S+) (%S+) (%S+) (%d+) (%d+)\\n()')
  if not tag then return nil end
  return {pending = tag == 'P', version = version, created = created, expires = expires, rest = rest,
          lengths = user_length .. ' ' .. key_length,
          user = string.sub(stored, rest, rest + tonumber(user_length) - 1)}
end
"""

# KEYS[1] record: a pending record becomes live (its TTL kept).  1 done, 0 gone meanwhile.
CLUSTER_PUBLISH = """
local value = redis.call('GET', KEYS[1])
if not value or string.sub(value, 1, 3) ~= 'P1 ' then return 0 end
redis.call('SET', KEYS[1], 'K1 ' .. string.sub(value, 4), 'KEEPTTL')
return 1
"""

# KEYS[1] record; ARGV[1] expected version, ARGV[2] ttl, ARGV[3] new user index key ('' = anonymous),
# ARGV[4] '1' when the new user's index entry is written, ARGV[5] value.
# {0} missing, {1} conflict, {2, old user, old expires_at} saved, {3, old user} the user changes: the new
# user's entry (if any) goes first, and the write is repeated with ARGV[4] = '1' (then WAIT when asked).
CLUSTER_SET = CLUSTER_HEADER + """
local stored = header(redis.call('GET', KEYS[1]))
if not stored or stored.pending then return {0, ''} end
if stored.version ~= ARGV[1] then return {1, ''} end
if ARGV[3] ~= stored.user and ARGV[4] ~= '1' then return {3, stored.user} end
redis.call('SET', KEYS[1], ARGV[5], 'EX', ARGV[2])
return {2, stored.user, stored.expires}
"""

# KEYS[1] record; ARGV[1] updated_at, ARGV[2] expires_at, ARGV[3] ttl.  {0, ''} gone, {1, user} touched.
CLUSTER_TOUCH = CLUSTER_HEADER + """
local value = redis.call('GET', KEYS[1])
local stored = header(value)
if not stored or stored.pending then return {0, ''} end
redis.call('SET', KEYS[1], 'K1 ' .. stored.version .. ' ' .. stored.created .. ' ' .. ARGV[1] .. ' ' ..
           ARGV[2] .. ' ' .. stored.lengths .. '\\n' .. string.sub(value, stored.rest), 'EX', ARGV[3])
return {1, stored.user}
"""

# KEYS[1] record; ARGV[1] only if expires_at <= this ('' = always).  {0, ''} or {1, user it named}.
CLUSTER_DELETE = CLUSTER_HEADER + """
local value = redis.call('GET', KEYS[1])
if not value then return {0, ''} end
local stored = header(value)
if ARGV[1] ~= '' and (not stored or stored.pending or tonumber(stored.expires) > tonumber(ARGV[1])) then
  return {0, ''}
end
redis.call('DEL', KEYS[1])
if stored then return {1, stored.user} end
return {1, ''}
"""

# KEYS[1] record; ARGV[1] user index key.  Deletes the record only if it (pending or live) names
# that user: {'d', version} deleted, {'o', version} someone else's, {'a', '0'} absent or foreign.
CLUSTER_REVOKE = CLUSTER_HEADER + """
local stored = header(redis.call('GET', KEYS[1]))
if not stored then return {'a', '0'} end
if stored.user ~= ARGV[1] then return {'o', stored.version} end
redis.call('DEL', KEYS[1])
return {'d', stored.version}
"""

# KEYS[1] user index; ARGV[1] member, ARGV[2] version, ARGV[3] nonce, ARGV[4] ttl.  The entry keeps
# the larger version and always takes the new nonce (see :mod:`._cluster`).
CLUSTER_INDEX_ADD = """
local version = tonumber(ARGV[2])
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local known = tonumber(string.match(current, '^(-?%d+) '))
  if known and known > version then version = known end
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', version) .. ' ' .. ARGV[3])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 1
"""

# KEYS[1] user index; ARGV: member, value, member, value...: drop each entry still holding exactly
# the value read before its record was checked.
CLUSTER_INDEX_DROP_SEEN = """
local dropped = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    dropped = dropped + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return dropped
"""

# KEYS[1] user index; ARGV[1] ttl: the index lives at least that long.
CLUSTER_INDEX_STRETCH = """
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return 1
"""

# KEYS[1] user index; ARGV[1] member to keep ('' = none): how many other entries it holds.
CLUSTER_INDEX_LEFT = """
local left = redis.call('HLEN', KEYS[1])
if ARGV[1] ~= '' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then left = left - 1 end
return left
"""
