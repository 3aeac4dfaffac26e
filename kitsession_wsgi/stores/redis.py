"""Sessions in Redis through redis-py: a standalone server, Sentinel, or Redis Cluster.

(Why this module is long: it holds two layouts, one standalone server with Lua scripts
that touch several keys atomically, and Redis Cluster, where every script touches one key
and the contract's promises are kept by ordering and compare-and-delete instead; the
argument for the second is written out below, next to the code it justifies.)

Layout under ``prefix`` (default ``"sess:"``):

* ``sess:<key>``: one STRING per session holding the whole record, expiring
  with it (``EXPIRE`` in seconds: svelte-kit-session used milliseconds).  Reading a
  session is exactly one ``GET``.  The value is an ASCII header line, then the
  user index key, the record key and the data, as UTF-8 (lone surrogates kept
  with ``surrogatepass``)::

      K1 <version> <created_at> <updated_at> <expires_at> <user bytes> <key bytes>\\n<user><key><data>

  ``K1`` names the format; the times are Python ``repr`` floats; ``<user>`` is
  the user's index key (``i:5``, ``s:alice``, empty for an anonymous session)
  and the two lengths are byte counts, so user ids, keys and data may hold any
  character.  The Lua scripts read only the header (a ``string.match``
  anchored at the start) and never look into the data.
* ``sess:user:<i:5|s:alice>``: the user's index, for listing and "sign out
  everywhere" without scanning: a SET of record keys on one Redis, a HASH of
  record key -> ``"<version> <nonce>"`` on a cluster (below).  It expires with
  the user's longest-lived session (plus an hour on a cluster).
* ``sess:lock:<key>``: per-session locks (``SET NX PX``).

One Redis (standalone or Sentinel)
----------------------------------

Create, versioned save, touch and delete are Lua scripts (one round trip each,
atomic with the per-user SET; redis-py's ``register_script`` re-loads them
after a server restart).  "Sign out everywhere" runs in batches of at most
``_BATCH`` members per script (a user with 20,000 sessions no longer blocks
Redis for one long script); it repeats until the user's SET holds nothing but
the kept session, a check made inside the last script, so it ends at a moment
when the user had no other session.  ``get_all`` and ``purge_expired`` use
``SCAN``; Redis drops expired records itself, so ``purge_expired`` only removes
records the application's clock considers expired before their TTL and prunes
the per-user SETs.  The scripts build the per-user SET key from the record,
which only one Redis allows.

Redis Cluster
-------------

Given a ``redis.cluster.RedisCluster`` client, every key hashes by its own name
(no ``{hash tag}``), so sessions and user indexes spread over every master, and
every script touches exactly one key.  A record and its user's index usually
live on different masters, so no step is atomic with another; the rules the
contract needs come from the order of the steps and from the index entries'
values instead:

* **The index rule**: every live record naming user U has an entry in U's index.
  An entry is written *before* any record names its user, and removed only when
  its record is gone or names someone else at a version at least the entry's.
* **Entries** are ``"<version> <nonce>"``: the version of the write that added
  it (an entry never goes down: a write keeps the larger version) and a fresh
  random nonce on every write.  Every removal is a compare-and-delete of the
  whole value read *before* the record was checked, so an entry written again
  meanwhile (a racing create or move) is never removed by a decision made about
  the old one.
* **Create** (insert-only) with a user: ``SET NX`` of the record marked
  *pending* (header ``P1`` instead of ``K1``: readers, saves and touches treat it
  as absent), then the index entry, then a script turning ``P1`` into ``K1`` if
  the pending record is still there.  A pruner that sees the entry therefore
  also sees the record (pending counts as naming U), so "entry present, record
  absent" always means the record is gone for good.  An anonymous create is one
  ``SET NX``.  A pending record left by a crashed creator expires with its TTL.
* **Versioned save** is one script on the record when the user does not change
  (plus a stretch of the index's TTL when it moves a signed-in session's expiry
  later).  A save that changes the user from U to W gets "user changes" back
  without writing; it reads U's entry, adds W's entry (if any), repeats the
  versioned write (which may now conflict: W's entry is then a stale one), and
  after a successful write compare-and-deletes U's entry with the value read
  before it.
* **Why a compare-and-delete never breaks the rule**: the remover read the entry
  (value x), then saw the record gone or naming someone else at a version at
  least x's (or, for a save, wrote it so).  A write that makes the record name U
  afterwards writes U's entry first; if after the read of x, the nonce differs
  and the entry stays.  If before: a create would have put its pending record
  there before its entry, so the record would have been seen naming U; a save
  reads the record, then writes its entry with the version it will write, and
  can only succeed on the version it read, which is below the version already
  seen (or written), so it conflicts.  This relies on every save writing a
  higher version than it expects, as the core does, and on a deleted key never
  being created again (the core's keys are digests of fresh random ids).
* **No resurrection**: a save or touch of a missing (or pending) record changes
  nothing; a deleted record is gone from its own key, whatever its index says.
* **Touch** rewrites the record's times and TTL, then stretches the user
  index's TTL (an hour of margin over the record's, so the index cannot expire
  between the two steps).
* **Delete** removes the record, then its entry by the compare-and-delete above.
* **Readers filter**: ``get_all_for_user`` reads the index (``HGETALL``), then the
  records (one pipelined round trip per master) and keeps records that are live
  and name the user; stale entries it met are compare-and-deleted.
  ``purge_expired`` sweeps every index the same way.
* **Sign out everywhere** reads the index in ``HSCAN`` batches of at most
  ``_BATCH`` entries; a script on each record deletes it only if it still names
  the user, and the stale entries are compare-and-deleted.  It repeats until a
  one-key check on the index finds no entry but the kept session's: at that
  moment, by the index rule, the user had no other live session, so a session
  moved to a new id meanwhile (its entry written before the old one is retired)
  is caught by a later pass.  After ``_MAX_PASSES`` passes it stops anyway:
  what is left then are entries whose records did not name the user when last
  checked (a save to the user still in flight, or one that expected a version
  the record never had).  It is not a point-in-time snapshot: a session
  created meanwhile may or may not be removed.  A session written before the
  call started is removed.  When a master is down it removes what it can reach,
  then raises :class:`~kitsession_wsgi.StoreUnavailable`; calling it again
  finishes the job.
* Reading a session stays one ``GET``.  Writes that name a user cost more round
  trips than on one Redis: a create with a user 3, a save moving a session from
  one user to another 5 (to or from anonymous 3-4), a save moving a signed-in session's expiry 2, a touch of a user's
  session 2, a delete of a user's session 4.

``wait_replicas=N`` sends ``WAIT N wait_timeout_ms`` on the same connection
right after each delete, each batch of "sign out everywhere" and each save that
changes the user, so an acknowledged logout or revoke is on N replicas and
survives a failover; it costs a replica round trip on those writes, and raises
``StoreUnavailable`` when fewer replicas confirmed in time (the write is done on
the master; retrying is safe).  ``WAIT`` covers the writes of the call it
follows: a retry of a delete that finds nothing has nothing to wait for.

Use a client with ``decode_responses=False`` (redis-py's default): session JSON
may hold lone surrogates (``"\\ud800"`` sent by a client), which the store
writes losslessly but a decoding client cannot read.

Connection errors, timeouts, a server still loading its dataset, a read-only
replica, an out-of-memory refusal and every cluster error (``CLUSTERDOWN``,
``MOVED``/``ASK``/``TRYAGAIN`` loops, an uncovered slot) raise
:class:`~kitsession_wsgi.StoreUnavailable`.

.. versionadded:: 0.1
.. versionchanged:: 0.2
   Redis Cluster; "sign out everywhere" in bounded batches; ``wait_replicas``.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Union, cast
from urllib.parse import unquote, urlsplit

from ..errors import ConfigurationError, StoreUnavailable
from ._format import decode_record, encode_record, to_bytes, to_text, user_text
from ._format import storage_id as _storage_id
from .base import SessionRecord, SessionStore, SetResult, UserId

try:
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.cluster import ClusterNode, RedisCluster
    from redis.exceptions import AskError, ClusterError, OutOfMemoryError, ReadOnlyError, RedisClusterException
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.exceptions import TryAgainError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "kitsession_wsgi.stores.redis needs redis-py: pip install 'kitsession-wsgi[redis]'"
    ) from exc

__all__ = ["RedisStore"]

#: BusyLoadingError is a ConnectionError; ReadOnlyError is a failed-over or replica
#: server; OutOfMemoryError is maxmemory with noeviction: none is a missing session.
#: ClusterError covers CLUSTERDOWN, MasterDownError and redirection loops (redis-py raises it
#: once its retries are spent); AskError (and MovedError) and TryAgainError reach us inside
#: pipeline replies; RedisClusterException is an uncovered slot or a cluster the client
#: cannot map.
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OutOfMemoryError, ClusterError,
                AskError, TryAgainError, RedisClusterException)
#: cluster-state replies redis-py leaves as a plain ResponseError
_CLUSTER_STATE_REPLIES = ("CLUSTERDOWN", "MOVED", "ASK", "TRYAGAIN", "MASTERDOWN", "LOADING", "READONLY")
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_SCAN_COUNT = 1000
#: most index members one script (or one HSCAN and its record scripts) handles
_BATCH = 200
#: most passes of a cluster "sign out everywhere" (see the module notes)
_MAX_PASSES = 50
#: a cluster user index outlives the user's longest session by this much (seconds)
_INDEX_TTL_MARGIN = 3600

#: header of a stored record: format tag, version, three times, user length, key length
_HEADER_BYTES = re.compile(rb"([KP])1 (-?\d+) \S+ \S+ \S+ (\d+) \d+\n")

Client = Union["redis.Redis", "RedisCluster"]

# Every script that reads a record parses only its header line; a value this store did not
# write (no "K1" header) counts as no record.  `lengths` is kept verbatim for touch's rewrite.
_HEADER = """
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
_CREATE = """
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
_SET = _HEADER + """
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
_TOUCH = _HEADER + """
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
_DELETE = _HEADER + """
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
_DELETE_FOR_USER = _HEADER + """
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

# KEYS[1] user set; ARGV[1] record prefix, ARGV[2] user index key: drop members whose record is gone
# or now belongs to someone else.
_PRUNE = _HEADER + """
local pruned = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local stored = header(redis.call('GET', ARGV[1] .. member))
  if not stored or stored.user ~= ARGV[2] then
    redis.call('SREM', KEYS[1], member)
    pruned = pruned + 1
  end
end
return pruned
"""

# KEYS[1] lock; ARGV[1] token
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# -- Redis Cluster: every script touches KEYS[1] only ------------------------------------

# A record's header, pending ('P1') or live ('K1').
_CLUSTER_HEADER = """
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
_CLUSTER_PUBLISH = """
local value = redis.call('GET', KEYS[1])
if not value or string.sub(value, 1, 3) ~= 'P1 ' then return 0 end
redis.call('SET', KEYS[1], 'K1 ' .. string.sub(value, 4), 'KEEPTTL')
return 1
"""

# KEYS[1] record; ARGV[1] expected version, ARGV[2] ttl, ARGV[3] new user index key ('' = anonymous),
# ARGV[4] '1' when the new user's index entry is written, ARGV[5] value.
# {0} missing, {1} conflict, {2, old user, old expires_at} saved, {3, old user} the user changes: the new
# user's entry (if any) goes first, and the write is repeated with ARGV[4] = '1' (then WAIT when asked).
_CLUSTER_SET = _CLUSTER_HEADER + """
local stored = header(redis.call('GET', KEYS[1]))
if not stored or stored.pending then return {0, ''} end
if stored.version ~= ARGV[1] then return {1, ''} end
if ARGV[3] ~= stored.user and ARGV[4] ~= '1' then return {3, stored.user} end
redis.call('SET', KEYS[1], ARGV[5], 'EX', ARGV[2])
return {2, stored.user, stored.expires}
"""

# KEYS[1] record; ARGV[1] updated_at, ARGV[2] expires_at, ARGV[3] ttl.  {0, ''} gone, {1, user} touched.
_CLUSTER_TOUCH = _CLUSTER_HEADER + """
local value = redis.call('GET', KEYS[1])
local stored = header(value)
if not stored or stored.pending then return {0, ''} end
redis.call('SET', KEYS[1], 'K1 ' .. stored.version .. ' ' .. stored.created .. ' ' .. ARGV[1] .. ' ' ..
           ARGV[2] .. ' ' .. stored.lengths .. '\\n' .. string.sub(value, stored.rest), 'EX', ARGV[3])
return {1, stored.user}
"""

# KEYS[1] record; ARGV[1] only if expires_at <= this ('' = always).  {0, ''} or {1, user it named}.
_CLUSTER_DELETE = _CLUSTER_HEADER + """
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
_CLUSTER_REVOKE = _CLUSTER_HEADER + """
local stored = header(redis.call('GET', KEYS[1]))
if not stored then return {'a', '0'} end
if stored.user ~= ARGV[1] then return {'o', stored.version} end
redis.call('DEL', KEYS[1])
return {'d', stored.version}
"""

# KEYS[1] user index; ARGV[1] member, ARGV[2] version, ARGV[3] nonce, ARGV[4] ttl.  The entry keeps
# the larger version and always takes the new nonce (see the module notes).
_CLUSTER_INDEX_ADD = """
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
_CLUSTER_INDEX_DROP_SEEN = """
local dropped = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    dropped = dropped + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return dropped
"""

# KEYS[1] user index; ARGV[1] ttl: the index lives at least that long.
_CLUSTER_INDEX_STRETCH = """
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return 1
"""

# KEYS[1] user index; ARGV[1] member to keep ('' = none): how many other entries it holds.
_CLUSTER_INDEX_LEFT = """
local left = redis.call('HLEN', KEYS[1])
if ARGV[1] ~= '' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then left = left - 1 end
return left
"""


def _owner(raw: Any) -> tuple[str, int, bool] | None:
    """``(user index key, version, pending)`` from a stored record's header; ``None`` if none."""
    if not raw:
        return None
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    match = _HEADER_BYTES.match(raw)
    if match is None:
        return None
    start = match.end()
    return (to_text(raw[start:start + int(match.group(3))]), int(match.group(2)), match.group(1) == b"P")


def _entry_version(value: Any) -> int:
    return int(to_text(value).split(" ", 1)[0])


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _UNAVAILABLE):
        return True
    return isinstance(exc, ResponseError) and str(exc).upper().startswith(_CLUSTER_STATE_REPLIES)


class RedisStore(SessionStore):
    """Sessions in Redis, one STRING per session plus an index per user.

    :param client: a ``redis.Redis`` client (standalone or from Sentinel) or a
        ``redis.cluster.RedisCluster``, preferably with
        ``decode_responses=False`` (see the module notes).  Give it timeouts:
        :meth:`from_url` and :meth:`from_cluster_url` do.
    :param prefix: put before every Redis key.
    :param wait_replicas: after each delete, batch of "sign out everywhere" and
        save that changes the user, ``WAIT`` until this many replicas have the
        write (0, the default, waits for none).  See the module notes.
    :param wait_timeout_ms: how long ``WAIT`` may block; fewer replicas by then
        raises :class:`~kitsession_wsgi.StoreUnavailable`.
    :raises ConfigurationError: an empty prefix, a negative ``wait_replicas``
        or a ``wait_timeout_ms`` below 1.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       ``client`` may be a ``RedisCluster``; ``wait_replicas`` and ``wait_timeout_ms``.
    """

    def __init__(self, client: Client, *, prefix: str = "sess:", wait_replicas: int = 0,
                 wait_timeout_ms: int = 1000) -> None:
        if not isinstance(prefix, str) or not prefix or len(prefix) > 100 or not prefix.isprintable():
            raise ConfigurationError(
                "prefix", f"must be a non-empty printable string of at most 100 characters, got {prefix!r}"
            )
        try:
            prefix.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigurationError("prefix", f"must be valid UTF-8 text, got {prefix!r}") from None
        if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int) or wait_replicas < 0:
            raise ConfigurationError("wait_replicas", f"must be an int >= 0, got {wait_replicas!r}")
        if isinstance(wait_timeout_ms, bool) or not isinstance(wait_timeout_ms, int) or wait_timeout_ms < 1:
            raise ConfigurationError("wait_timeout_ms", f"must be an int >= 1, got {wait_timeout_ms!r}")
        self.client = client
        self.prefix = prefix
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        #: ``True`` when the client is a ``RedisCluster`` (the one-key algorithms apply)
        self.is_cluster = isinstance(client, RedisCluster)
        self._user_prefix = prefix + "user:"
        register = client.register_script
        self._create = register(_CREATE)
        self._set = register(_SET)
        self._touch = register(_TOUCH)
        self._delete = register(_DELETE)
        self._delete_for_user = register(_DELETE_FOR_USER)
        self._prune = register(_PRUNE)
        self._release = register(_RELEASE)
        self._publish = register(_CLUSTER_PUBLISH)
        self._cluster_set = register(_CLUSTER_SET)
        self._cluster_touch = register(_CLUSTER_TOUCH)
        self._cluster_delete = register(_CLUSTER_DELETE)
        self._index_add = register(_CLUSTER_INDEX_ADD)
        self._index_drop_seen = register(_CLUSTER_INDEX_DROP_SEEN)
        self._index_stretch = register(_CLUSTER_INDEX_STRETCH)
        self._index_left = register(_CLUSTER_INDEX_LEFT)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "sess:", **client_options: Any) -> RedisStore:
        """A store on the Redis at ``url`` (``redis://host:port/db``, ``rediss://``, ``unix://``).

        The client gets 1-second connect and read timeouts and one quick retry
        (enough to replace a connection a restarted server closed) instead of
        redis-py's ten; ``client_options`` override them.  A
        ``redis+cluster://`` or ``rediss+cluster://`` URL goes to
        :meth:`from_cluster_url`.

        .. versionadded:: 0.1
        """
        if not isinstance(url, str) or not url:
            raise ConfigurationError("url", f"must be a Redis URL, got {url!r}")
        if url.split(":", 1)[0].lower() in ("redis+cluster", "rediss+cluster"):
            return cls.from_cluster_url(url, prefix=prefix, **client_options)
        options: dict[str, Any] = {
            "socket_timeout": 1.0,
            "socket_connect_timeout": 1.0,
            "retry": Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1),
            **client_options,
        }
        return cls(redis.Redis.from_url(url, **options), prefix=prefix)

    @classmethod
    def from_cluster_url(cls, url: str, *, prefix: str = "sess:", wait_replicas: int = 0,
                         wait_timeout_ms: int = 1000, **client_options: Any) -> RedisStore:
        """A store on the Redis Cluster at ``redis+cluster://[user:password@]host:port[,host:port...]/``.

        ``rediss+cluster://`` connects with TLS.  The hosts are startup nodes:
        any reachable one is enough to discover the rest.  The client gets
        1-second connect and read timeouts and one quick retry per node;
        ``client_options`` (``RedisCluster`` arguments) override them.  Unlike
        :meth:`from_url`, this connects: redis-py reads the cluster's slot map
        when the client is built.

        :raises StoreUnavailable: no startup node answered.
        :raises ConfigurationError: a URL of another scheme, without hosts, with
            a bad port, or with a database number (a cluster has only database 0).

        .. versionadded:: 0.2
        """
        if not isinstance(url, str) or not url:
            raise ConfigurationError("url", f"must be a Redis Cluster URL, got {url!r}")
        scheme, _, rest = url.partition("://")
        if scheme.lower() not in ("redis+cluster", "rediss+cluster") or not rest:
            raise ConfigurationError("url", f"must be redis+cluster://host:port[,host:port...]/, got {url!r}")
        parts = urlsplit("redis://" + rest)
        credentials, _, hosts = parts.netloc.rpartition("@")
        nodes: list[ClusterNode] = []
        for host_port in hosts.split(","):
            host, _, port = host_port.strip().rpartition(":")
            if not host_port.strip():
                continue
            if not host:
                host, port = port, "6379"
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigurationError("url", f"{host_port!r} in {url!r} has no valid port")
            nodes.append(cast(Any, ClusterNode)(host.strip("[]"), int(port)))
        if not nodes:
            raise ConfigurationError("url", f"{url!r} names no cluster node (redis+cluster://host:port,...)")
        if parts.path.strip("/") not in ("", "0"):
            raise ConfigurationError("url", f"{url!r}: a Redis Cluster has only database 0")
        options: dict[str, Any] = {
            "socket_timeout": 1.0,
            "socket_connect_timeout": 1.0,
            "retry": Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1),
        }
        if credentials:
            username, has_password, password = credentials.partition(":")
            if has_password:
                options["username"] = unquote(username) or None
                options["password"] = unquote(password)
            else:
                options["password"] = unquote(username)
        if scheme.lower() == "rediss+cluster":
            options["ssl"] = True
        options.update(client_options)
        try:
            # RedisCluster asks a startup node for the slot map as it is built.
            client = RedisCluster(startup_nodes=nodes, **options)
        except Exception as exc:
            if not _is_unavailable(exc):
                raise
            raise StoreUnavailable(f"Redis Cluster at {hosts!r} could not be reached: {type(exc).__name__}: {exc}",
                                   store="redis") from exc
        return cls(client, prefix=prefix, wait_replicas=wait_replicas, wait_timeout_ms=wait_timeout_ms)

    # -- keys -------------------------------------------------------------------------

    def _record_key(self, key: str) -> str:
        return self.prefix + _storage_id(key)

    def _user_key(self, user_id: UserId) -> str:
        return self._user_prefix + user_text(user_id)

    @contextmanager
    def _driver_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            if not _is_unavailable(exc):
                raise
            raise StoreUnavailable(
                f"Redis could not {action}: {type(exc).__name__}: {exc}", store="redis"
            ) from exc

    def _written_then_waited(self, action: str, record_key: str, script: Any, keys: Sequence[str],
                             args: Sequence[Any]) -> Any:
        """Run ``script``, then (with ``wait_replicas``) ``WAIT`` on the same connection; its reply."""
        with self._driver_errors(action):
            if not self.wait_replicas:
                return script(keys=list(keys), args=list(args))
            # EVAL, not EVALSHA: a pipeline cannot reload a script a failed-over master lacks.
            pipeline = self._node_pipeline(record_key)
            pipeline.execute_command("EVAL", script.script, len(keys), *keys, *args)
            pipeline.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            reply, acknowledged = pipeline.execute()
        self._check_acknowledged(action, [acknowledged])
        return reply

    def _node_pipeline(self, key: str) -> Any:
        """A plain pipeline on one connection to the server holding ``key`` (its master on a cluster).

        On a cluster this bypasses ``ClusterPipeline``, which asks the client's default
        node (``COMMAND GETKEYS``) where each ``EVAL`` goes: with that node down, every
        pipeline would fail, not only the dead master's.  ``WAIT`` must follow the write on
        the same connection anyway.  A ``MOVED`` reply (a stale slot map) raises
        ``MovedError``, which is unavailability; see :meth:`_refresh_slots`.
        """
        if not self.is_cluster:
            return self.client.pipeline(transaction=False)
        cluster: Any = self.client
        return cluster.get_redis_connection(cluster.get_node_from_key(key)).pipeline(transaction=False)

    def _refresh_slots(self) -> None:
        """Re-read the cluster's slot map after a master failed us, so a retry goes to its successor."""
        try:
            cast(Any, self.client).nodes_manager.initialize()
        except Exception as exc:
            if not _is_unavailable(exc):
                raise
            # Still unreachable: the caller raises StoreUnavailable already, and the client
            # re-reads the map itself on its next redirection or connection error.

    def _check_acknowledged(self, action: str, acknowledgements: Sequence[Any]) -> None:
        short = [int(n) for n in acknowledgements if int(n) < self.wait_replicas]
        if short:
            raise StoreUnavailable(
                f"Redis could not {action} durably: {min(short)} of {self.wait_replicas} replicas confirmed the "
                f"write within {self.wait_timeout_ms} ms (it is done on the master; retrying is safe)",
                store="redis",
            )

    # -- records ----------------------------------------------------------------------

    def get(self, key: str) -> SessionRecord | None:
        """The record under ``key``: one ``GET``.

        :raises StoreUnavailable: Redis cannot be reached.

        .. versionadded:: 0.1
        """
        with self._driver_errors("read a session"):
            raw = self.client.get(self._record_key(key))
        record = decode_record(raw)
        return record if record is not None and record.key == key else None

    def create(self, record: SessionRecord) -> bool:
        """Insert the record and add it to its user's index; ``False`` if the key exists.

        One atomic script on one Redis; on a cluster the steps of the module notes.

        .. versionadded:: 0.1
        """
        storage_id = _storage_id(record.key)
        record_key = self.prefix + storage_id
        if self.is_cluster:
            return self._cluster_create(record, storage_id, record_key)
        keys = [record_key]
        if record.user_id is not None:
            keys.append(self._user_key(record.user_id))
        with self._driver_errors("create a session"):
            return bool(self._create(keys=keys, args=[record.ttl(), storage_id, encode_record(record)]))

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        """Replace the record if its stored version is ``expected_version``.

        Moves the record between user indexes when its user changes (one Lua
        call on one Redis; on a cluster the steps of the module notes).

        .. versionadded:: 0.1
        """
        storage_id = _storage_id(record.key)
        new_index = user_text(record.user_id) if record.user_id is not None else ""
        if self.is_cluster:
            return self._cluster_save(record, expected_version, storage_id, new_index)
        record_key = self.prefix + storage_id
        args: list[Any] = [expected_version, record.ttl(), storage_id, self._user_prefix, new_index,
                           encode_record(record), "1" if self.wait_replicas else "0"]
        with self._driver_errors("save a session"):
            result = int(self._set(keys=[record_key], args=args))
        if result == 3:
            # A user change with wait_replicas: written again with WAIT on the same connection.
            args[6] = "0"
            result = int(self._written_then_waited("save a session", record_key, self._set, [record_key], args))
        return (SetResult.MISSING, SetResult.CONFLICT, SetResult.SAVED)[result]

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        """Move ``updated_at``, ``expires_at`` and the key's TTL; ``False`` when gone.

        .. versionadded:: 0.1
        """
        ttl = max(1, math.ceil(expires_at - updated_at))
        if self.is_cluster:
            with self._driver_errors("touch a session"):
                found, user = self._cluster_touch(keys=[self._record_key(key)],
                                                  args=[repr(updated_at), repr(expires_at), ttl])
                if int(found) and to_text(user):
                    self._index_stretch(keys=[self._user_prefix + to_text(user)], args=[ttl + _INDEX_TTL_MARGIN])
            return bool(int(found))
        with self._driver_errors("touch a session"):
            return bool(
                self._touch(keys=[self._record_key(key)],
                            args=[repr(updated_at), repr(expires_at), ttl, self._user_prefix])
            )

    def delete(self, key: str) -> bool:
        """Delete the record and its user-index entry; ``True`` when it existed.

        .. versionadded:: 0.1
        """
        storage_id = _storage_id(key)
        record_key = self.prefix + storage_id
        if self.is_cluster:
            found, user = self._written_then_waited("delete a session", record_key, self._cluster_delete,
                                                    [record_key], [""])
            if to_text(user):
                self._forget_if_stale(to_text(user), storage_id)
            return bool(int(found))
        return bool(self._written_then_waited("delete a session", record_key, self._delete, [record_key],
                                              [self._user_prefix, storage_id, ""]))

    # -- Redis Cluster writes ---------------------------------------------------------

    def _add_entry(self, index: str, storage_id: str, version: int, ttl: int) -> None:
        self._index_add(keys=[self._user_prefix + index],
                        args=[storage_id, version, secrets.token_hex(8), ttl + _INDEX_TTL_MARGIN])

    def _cluster_create(self, record: SessionRecord, storage_id: str, record_key: str) -> bool:
        value = encode_record(record)
        with self._driver_errors("create a session"):
            if record.user_id is None:
                return bool(self.client.set(record_key, value, nx=True, ex=record.ttl()))
            # Pending first, then the index entry, then live: see the module notes.
            if not self.client.set(record_key, b"P1" + value[2:], nx=True, ex=record.ttl()):
                return False
            self._add_entry(user_text(record.user_id), storage_id, record.version, record.ttl())
            # 0 here means a "sign out everywhere" removed the pending record meanwhile: the
            # session was created, then revoked.
            self._publish(keys=[record_key])
        return True

    def _cluster_save(self, record: SessionRecord, expected_version: int, storage_id: str,
                      new_index: str) -> SetResult:
        record_key = self.prefix + storage_id
        value = encode_record(record)
        args: list[Any] = [expected_version, record.ttl(), new_index, "0", value]
        with self._driver_errors("save a session"):
            reply = self._cluster_set(keys=[record_key], args=args)
        old_entry: Any = None
        if int(reply[0]) == 3:
            # A user change.  The old user's entry is read now, before the write, so that it
            # can be removed afterwards only if nothing wrote it meanwhile; the new user's
            # entry goes first; then the versioned write again.
            old_index = to_text(reply[1])
            with self._driver_errors("save a session"):
                if old_index:
                    old_entry = self.client.hget(self._user_prefix + old_index, storage_id)
                if new_index:
                    self._add_entry(new_index, storage_id, record.version, record.ttl())
            args[3] = "1"
            reply = self._written_then_waited("save a session", record_key, self._cluster_set, [record_key], args)
        code, old_index = int(reply[0]), to_text(reply[1])
        if code == 2 and old_entry is not None:
            with self._driver_errors("move a session between users"):
                self._index_drop_seen(keys=[self._user_prefix + old_index], args=[storage_id, old_entry])
        elif code == 2 and new_index and record.expires_at > float(to_text(reply[2])):
            # The record now outlives what its index was last stretched for (an idle deadline
            # moved by a save): stretch the index too, as touch does.
            with self._driver_errors("save a session"):
                self._index_stretch(keys=[self._user_prefix + new_index], args=[record.ttl() + _INDEX_TTL_MARGIN])
        return (SetResult.MISSING, SetResult.CONFLICT, SetResult.SAVED)[code]

    def _forget_if_stale(self, index: str, storage_id: str) -> None:
        """Drop ``storage_id``'s entry from ``index`` if its record is gone or someone else's."""
        with self._driver_errors("update a user's session index"):
            value = self.client.hget(self._user_prefix + index, storage_id)
        if value is not None:
            self._prune_entries(index, {storage_id: value})

    def _prune_entries(self, index: str, entries: dict[str, Any]) -> list[tuple[str, Any]]:
        """Check the records of ``entries`` (read before this call) and drop the stale entries.

        Returns ``(storage id, raw record)`` of the entries whose records are live and the user's.
        """
        if not entries:
            return []
        ids = sorted(entries)
        raws = self._load_raw([self.prefix + i for i in ids])
        owned: list[tuple[str, Any]] = []
        stale: list[Any] = []
        for storage_id, raw in zip(ids, raws):
            owner = _owner(raw)
            if owner is not None and owner[0] == index:
                if not owner[2]:
                    owned.append((storage_id, raw))
            elif owner is None or owner[1] >= _entry_version(entries[storage_id]):
                stale += [storage_id, entries[storage_id]]
        if stale:
            with self._driver_errors("prune a user's session index"):
                self._index_drop_seen(keys=[self._user_prefix + index], args=stale)
        return owned

    # -- per user ---------------------------------------------------------------------

    def _load_raw(self, record_keys: Sequence[str]) -> list[Any]:
        """``GET`` of each key in one pipelined round trip (one per master on a cluster)."""
        if not record_keys:
            return []
        with self._driver_errors("read sessions"):
            pipeline: Any = self.client.pipeline() if self.is_cluster else self.client.pipeline(transaction=False)
            for record_key in record_keys:
                pipeline.get(record_key)
            return list(pipeline.execute())

    def _load(self, record_keys: Sequence[str]) -> list[tuple[str, SessionRecord | None]]:
        return [(k, decode_record(raw)) for k, raw in zip(record_keys, self._load_raw(record_keys))]

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        """The user's records: the index, then one pipelined read; stale entries are pruned.

        .. versionadded:: 0.1
        """
        users = self._user_key(user_id)
        index = user_text(user_id)
        if self.is_cluster:
            with self._driver_errors("list a user's sessions"):
                entries = {to_text(k): v for k, v in cast("dict[Any, Any]", self.client.hgetall(users)).items()}
            owned = self._prune_entries(index, entries)
            found = [decode_record(raw) for _, raw in owned]
            return [r for r in found if r is not None]
        with self._driver_errors("list a user's sessions"):
            members = sorted(to_text(m) for m in cast("set[Any]", self.client.smembers(users)))
        loaded = self._load([self.prefix + m for m in members])
        records = [r for _, r in loaded
                   if r is not None and r.user_id is not None and user_text(r.user_id) == index]
        if len(records) != len(members):
            with self._driver_errors("prune a user's session index"):
                self._prune(keys=[users], args=[self.prefix, index])
        return records

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        """Delete every record of the user but ``except_key``; return how many.

        Works in batches of at most ``_BATCH`` index members per script, so no
        single script runs long however many sessions the user has (see the
        module notes for how a cluster does it).

        :raises StoreUnavailable: Redis (or a cluster master) cannot be reached;
            what could be removed is removed, and calling again finishes the job.

        .. versionadded:: 0.1
        """
        kept = _storage_id(except_key) if except_key is not None else ""
        if self.is_cluster:
            return self._cluster_delete_all_for_user(user_text(user_id), kept)
        users = self._user_key(user_id)
        args = [self.prefix, user_text(user_id), kept, _BATCH]
        removed = 0
        while True:
            removed_now, left = self._written_then_waited("remove a user's sessions", users, self._delete_for_user,
                                                          [users], args)
            removed += int(removed_now)
            if int(left) <= 0:
                return removed

    def _cluster_delete_all_for_user(self, index: str, kept: str) -> int:
        users = self._user_prefix + index
        removed = 0
        for _ in range(_MAX_PASSES):
            removed_now, unreachable = self._revoke_pass(index, kept)
            removed += removed_now
            if unreachable:
                self._refresh_slots()
                raise StoreUnavailable(
                    f"Redis Cluster could not remove every session of a user: {unreachable} stayed out of "
                    f"reach ({removed} removed); retrying finishes the job", store="redis",
                )
            with self._driver_errors("remove a user's sessions"):
                if int(self._index_left(keys=[users], args=[kept])) <= 0:
                    return removed
        return removed

    def _revoke_pass(self, index: str, kept: str) -> tuple[int, int]:
        """One ``HSCAN`` pass over the index: ``(records removed, entries whose record was unreachable)``."""
        users = self._user_prefix + index
        removed = unreachable = 0
        cursor: Any = 0
        while True:
            with self._driver_errors("remove a user's sessions"):
                cursor, batch = cast("tuple[Any, dict[Any, Any]]",
                                     self.client.hscan(users, cursor=cursor, count=_BATCH))
            entries = {to_text(k): v for k, v in batch.items() if to_text(k) != kept}
            if entries:
                removed_now, failed = self._revoke_batch(index, entries)
                removed += removed_now
                unreachable += failed
            if int(cursor) == 0:
                return removed, unreachable

    def _revoke_batch(self, index: str, entries: dict[str, Any]) -> tuple[int, int]:
        """Revoke the records of one batch of entries, one pipeline per master; ``(removed, unreachable)``.

        A master that cannot be reached leaves its entries for a later call; the
        others are still done (a pipeline over every master would stop at the first).
        """
        cluster: Any = self.client
        by_master: dict[str, list[str]] = {}
        with self._driver_errors("remove a user's sessions"):
            for storage_id in sorted(entries):
                by_master.setdefault(cluster.get_node_from_key(self.prefix + storage_id).name, []).append(storage_id)
        removed = failed = 0
        stale: list[Any] = []
        acknowledgements: list[Any] = []
        for ids in by_master.values():
            try:
                pipeline = self._node_pipeline(self.prefix + ids[0])
                for storage_id in ids:
                    pipeline.execute_command("EVAL", _CLUSTER_REVOKE, 1, self.prefix + storage_id, index)
                if self.wait_replicas:
                    pipeline.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
                replies = pipeline.execute()
            except Exception as exc:
                if not _is_unavailable(exc):
                    raise
                failed += len(ids)
                continue
            acknowledgements += replies[len(ids):]
            for storage_id, reply in zip(ids, replies):
                status, version = to_text(reply[0]), int(reply[1])
                removed += status == "d"
                if status in ("d", "a") or version >= _entry_version(entries[storage_id]):
                    stale += [storage_id, entries[storage_id]]
        if stale:
            with self._driver_errors("remove a user's sessions"):
                self._index_drop_seen(keys=[self._user_prefix + index], args=stale)
        self._check_acknowledged("remove a user's sessions", acknowledgements)
        return removed, failed

    # -- everything -------------------------------------------------------------------

    def _scan(self, pattern: str, kind: str) -> Iterator[list[str]]:
        """Batches of keys matching ``pattern`` of Redis type ``kind`` (on every master of a cluster)."""
        if self.is_cluster:
            batch: list[str] = []
            with self._driver_errors("scan sessions"):
                for found in self.client.scan_iter(match=pattern, count=_SCAN_COUNT, _type=kind):
                    batch.append(to_text(found))
                    if len(batch) >= _SCAN_COUNT:
                        yield batch
                        batch = []
            if batch:
                yield batch
            return
        cursor: Any = 0
        while True:
            with self._driver_errors("scan sessions"):
                cursor, keys = cast(
                    "tuple[Any, list[Any]]",
                    self.client.scan(cursor=cursor, match=pattern, count=_SCAN_COUNT, _type=kind),
                )
            if keys:
                yield [to_text(k) for k in keys]
            if int(cursor) == 0:
                return

    def _scan_records(self) -> Iterator[tuple[str, SessionRecord]]:
        prefix_length = len(self.prefix)
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self.prefix) + "*"
        for batch in self._scan(pattern, "string"):
            # Keys with a ':' after the prefix are indexes, locks or someone else's.
            ours = [k for k in batch if ":" not in k[prefix_length:]]
            for record_key, record in self._load(ours):
                if record is not None:
                    yield record_key, record

    def get_all(self) -> list[SessionRecord]:
        """Every record, found with ``SCAN`` (prefix-matched, strings only; every master of a cluster).

        .. versionadded:: 0.1
        """
        return [record for _, record in self._scan_records()]

    def purge_expired(self, now: float) -> int:
        """Delete records with ``expires_at <= now`` and prune the user indexes; return how many.

        .. versionadded:: 0.1
        """
        expired = [(k, r) for k, r in self._scan_records() if r.expires_at <= now]
        removed = 0
        prefix_length = len(self.prefix)
        with self._driver_errors("purge expired sessions"):
            for record_key, _record_found in expired:
                # Re-checked inside the script: a touch in between keeps the session.
                if self.is_cluster:
                    removed += int(self._cluster_delete(keys=[record_key], args=[repr(now)])[0])
                else:
                    removed += int(self._delete(keys=[record_key],
                                                args=[self._user_prefix, record_key[prefix_length:], repr(now)]))
        user_pattern = _GLOB_SPECIAL.sub(r"\\\1", self._user_prefix) + "*"
        for batch in self._scan(user_pattern, "hash" if self.is_cluster else "set"):
            for users in batch:
                index = users[len(self._user_prefix):]
                if self.is_cluster:
                    self._prune_index(index)
                    continue
                with self._driver_errors("prune user session indexes"):
                    self._prune(keys=[users], args=[self.prefix, index])
        return removed

    def _prune_index(self, index: str) -> None:
        """Drop the stale entries of a cluster user index, ``_BATCH`` at a time."""
        cursor: Any = 0
        while True:
            with self._driver_errors("prune user session indexes"):
                cursor, batch = cast("tuple[Any, dict[Any, Any]]",
                                     self.client.hscan(self._user_prefix + index, cursor=cursor, count=_BATCH))
            self._prune_entries(index, {to_text(k): v for k, v in batch.items()})
            if int(cursor) == 0:
                return

    # -- locks ------------------------------------------------------------------------

    def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        """Take the lock with ``SET NX PX``.

        .. versionadded:: 0.1
        """
        with self._driver_errors("take a session lock"):
            return bool(self.client.set(f"{self.prefix}lock:{_storage_id(key)}", to_bytes(token), nx=True,
                                        px=max(1, math.ceil(ttl * 1000))))

    def release_lock(self, key: str, token: str) -> None:
        """Free the lock if ``token`` holds it (a Lua compare-and-delete).

        .. versionadded:: 0.1
        """
        with self._driver_errors("release a session lock"):
            self._release(keys=[f"{self.prefix}lock:{_storage_id(key)}"], args=[to_bytes(token)])

    def close(self) -> None:
        """Close the client's connections.

        .. versionadded:: 0.1
        """
        self.client.close()
