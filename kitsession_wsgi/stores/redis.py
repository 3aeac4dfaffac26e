"""Sessions in Redis through redis-py.

Layout under ``prefix`` (default ``"sess:"``):

* ``sess:<key>``: one STRING per session holding the whole record, expiring
  with it (``EXPIRE`` in seconds: the seed used milliseconds).  Reading a
  session is exactly one ``GET``.  The value is an ASCII header line, then the
  user index key, the record key and the data, as UTF-8 (lone surrogates kept
  with ``surrogatepass``)::

      K1 <version> <created_at> <updated_at> <expires_at> <user bytes> <key bytes>\\n<user><key><data>

  ``K1`` names the format; the times are Python ``repr`` floats; ``<user>`` is
  the user's index key (``i:5``, ``s:alice``, empty for an anonymous session)
  and the two lengths are byte counts, so user ids, keys and data may hold any
  character.  The Lua scripts read only the header (a ``string.match``
  anchored at the start) and never look into the data.
* ``sess:user:<i:5|s:alice>``: a SET of the user's record keys, for listing and
  "sign out everywhere" without scanning; it expires with the user's
  longest-lived session.
* ``sess:lock:<key>``: per-session locks (``SET NX PX``).

Create, versioned save, touch and delete are Lua scripts (one round trip each,
atomic with the per-user SET; redis-py's ``register_script`` re-loads them
after a server restart).  ``get_all`` and ``purge_expired`` use ``SCAN``;
Redis drops expired records itself, so ``purge_expired`` only removes records
the application's clock considers expired before their TTL and prunes the
per-user SETs.

The scripts build the per-user SET key from the record, so this store targets a
standalone (or Sentinel-managed) Redis 6.0 or newer (``SCAN ... TYPE``), not
Redis Cluster.  Use a client with ``decode_responses=False`` (redis-py's
default): session JSON may hold lone surrogates (``"\\ud800"`` sent by a
client), which the store writes losslessly but a decoding client cannot read.

Connection errors, timeouts, a server still loading its dataset, a read-only
replica and an out-of-memory refusal raise :class:`~kitsession_wsgi.StoreUnavailable`.

.. versionadded:: 0.1
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from ..errors import ConfigurationError, StoreUnavailable
from ._format import decode_record, encode_record, to_bytes, to_text, user_text
from ._format import storage_id as _storage_id
from .base import SessionRecord, SessionStore, SetResult, UserId

try:
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import OutOfMemoryError, ReadOnlyError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "kitsession_wsgi.stores.redis needs redis-py: pip install 'kitsession-wsgi[redis]'"
    ) from exc

__all__ = ["RedisStore"]

#: BusyLoadingError is a ConnectionError; ReadOnlyError is a failed-over or replica
#: server; OutOfMemoryError is maxmemory with noeviction: none is a missing session.
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OutOfMemoryError)
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_SCAN_COUNT = 1000

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
# ARGV[5] new user index key ('' = anonymous), ARGV[6] value.  0 missing, 1 conflict, 2 saved.
_SET = _HEADER + """
local stored = header(redis.call('GET', KEYS[1]))
if not stored then return 0 end
if stored.version ~= ARGV[1] then return 1 end
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

# KEYS[1] user set; ARGV[1] record prefix, ARGV[2] user index key, ARGV[3] member to keep ('' = none)
_DELETE_FOR_USER = _HEADER + """
local removed = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if member ~= ARGV[3] then
    local record = ARGV[1] .. member
    local stored = header(redis.call('GET', record))
    if stored and stored.user == ARGV[2] then removed = removed + redis.call('DEL', record) end
    redis.call('SREM', KEYS[1], member)
  end
end
return removed
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


class RedisStore(SessionStore):
    """Sessions in Redis, one STRING per session plus a SET per user.

    :param client: a ``redis.Redis`` client, preferably with
        ``decode_responses=False`` (see the module notes).  Give it timeouts:
        :meth:`from_url` does.
    :param prefix: put before every Redis key.
    :raises ConfigurationError: an empty prefix.

    .. versionadded:: 0.1
    """

    def __init__(self, client: redis.Redis, *, prefix: str = "sess:") -> None:
        if not isinstance(prefix, str) or not prefix or len(prefix) > 100 or not prefix.isprintable():
            raise ConfigurationError(
                "prefix", f"must be a non-empty printable string of at most 100 characters, got {prefix!r}"
            )
        try:
            prefix.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigurationError("prefix", f"must be valid UTF-8 text, got {prefix!r}") from None
        self.client = client
        self.prefix = prefix
        self._user_prefix = prefix + "user:"
        self._create = client.register_script(_CREATE)
        self._set = client.register_script(_SET)
        self._touch = client.register_script(_TOUCH)
        self._delete = client.register_script(_DELETE)
        self._delete_for_user = client.register_script(_DELETE_FOR_USER)
        self._prune = client.register_script(_PRUNE)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "sess:", **client_options: Any) -> RedisStore:
        """A store on the Redis at ``url`` (``redis://host:port/db``, ``rediss://``, ``unix://``).

        The client gets 1-second connect and read timeouts and one quick retry
        (enough to replace a connection a restarted server closed) instead of
        redis-py's ten; ``client_options`` override them.

        .. versionadded:: 0.1
        """
        if not isinstance(url, str) or not url:
            raise ConfigurationError("url", f"must be a Redis URL, got {url!r}")
        options: dict[str, Any] = {
            "socket_timeout": 1.0,
            "socket_connect_timeout": 1.0,
            "retry": Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1),
            **client_options,
        }
        return cls(redis.Redis.from_url(url, **options), prefix=prefix)

    # -- keys -------------------------------------------------------------------------

    def _record_key(self, key: str) -> str:
        return self.prefix + _storage_id(key)

    def _user_key(self, user_id: UserId) -> str:
        return self._user_prefix + user_text(user_id)

    @contextmanager
    def _driver_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(
                f"Redis could not {action}: {type(exc).__name__}: {exc}", store="redis"
            ) from exc

    # -- records ----------------------------------------------------------------------

    def get(self, key: str) -> SessionRecord | None:
        """The record under ``key``: one ``GET``.

        :raises StoreUnavailable: Redis cannot be reached.

        .. versionadded:: 0.1
        """
        try:
            raw = self.client.get(self._record_key(key))
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis could not read a session: {type(exc).__name__}: {exc}",
                                   store="redis") from exc
        record = decode_record(raw)
        return record if record is not None and record.key == key else None

    def create(self, record: SessionRecord) -> bool:
        """Insert the record and add it to its user's SET, atomically; ``False`` if the key exists.

        .. versionadded:: 0.1
        """
        storage_id = _storage_id(record.key)
        keys = [self.prefix + storage_id]
        if record.user_id is not None:
            keys.append(self._user_key(record.user_id))
        with self._driver_errors("create a session"):
            return bool(self._create(keys=keys, args=[record.ttl(), storage_id, encode_record(record)]))

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        """Replace the record if its stored version is ``expected_version`` (one Lua call).

        Moves the record between per-user SETs when its user changes.

        .. versionadded:: 0.1
        """
        storage_id = _storage_id(record.key)
        new_index = user_text(record.user_id) if record.user_id is not None else ""
        with self._driver_errors("save a session"):
            result = self._set(
                keys=[self.prefix + storage_id],
                args=[expected_version, record.ttl(), storage_id, self._user_prefix, new_index, encode_record(record)],
            )
        return (SetResult.MISSING, SetResult.CONFLICT, SetResult.SAVED)[int(result)]

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        """Move ``updated_at``, ``expires_at`` and the key's TTL (one Lua call); ``False`` when gone.

        .. versionadded:: 0.1
        """
        ttl = max(1, math.ceil(expires_at - updated_at))
        with self._driver_errors("touch a session"):
            return bool(
                self._touch(keys=[self._record_key(key)],
                            args=[repr(updated_at), repr(expires_at), ttl, self._user_prefix])
            )

    def delete(self, key: str) -> bool:
        """Delete the record and its per-user SET entry atomically; ``True`` when it existed.

        .. versionadded:: 0.1
        """
        storage_id = _storage_id(key)
        with self._driver_errors("delete a session"):
            return bool(self._delete(keys=[self.prefix + storage_id], args=[self._user_prefix, storage_id, ""]))

    # -- per user ---------------------------------------------------------------------

    def _load(self, record_keys: Sequence[str]) -> list[tuple[str, SessionRecord | None]]:
        """``GET`` of each key in one pipelined round trip."""
        if not record_keys:
            return []
        with self._driver_errors("read sessions"):
            pipeline = self.client.pipeline(transaction=False)
            for record_key in record_keys:
                pipeline.get(record_key)
            replies = pipeline.execute()
        return [(k, decode_record(reply)) for k, reply in zip(record_keys, replies)]

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        """The user's records: ``SMEMBERS`` then one pipelined read; stale members are pruned.

        .. versionadded:: 0.1
        """
        users = self._user_key(user_id)
        with self._driver_errors("list a user's sessions"):
            members = sorted(to_text(m) for m in cast("set[Any]", self.client.smembers(users)))
        loaded = self._load([self.prefix + m for m in members])
        index = user_text(user_id)
        records = [r for _, r in loaded
                   if r is not None and r.user_id is not None and user_text(r.user_id) == index]
        if len(records) != len(members):
            with self._driver_errors("prune a user's session index"):
                self._prune(keys=[users], args=[self.prefix, index])
        return records

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        """Delete every record of the user but ``except_key`` in one Lua call; return how many.

        .. versionadded:: 0.1
        """
        kept = _storage_id(except_key) if except_key is not None else ""
        with self._driver_errors("remove a user's sessions"):
            return int(
                self._delete_for_user(keys=[self._user_key(user_id)],
                                      args=[self.prefix, user_text(user_id), kept])
            )

    # -- everything -------------------------------------------------------------------

    def _scan(self, pattern: str, kind: str) -> Iterator[list[str]]:
        """Batches of keys matching ``pattern`` of Redis type ``kind``."""
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
        """Every record, found with ``SCAN`` (prefix-matched, strings only).

        .. versionadded:: 0.1
        """
        return [record for _, record in self._scan_records()]

    def purge_expired(self, now: float) -> int:
        """Delete records with ``expires_at <= now`` and prune the per-user SETs; return how many.

        .. versionadded:: 0.1
        """
        expired = [(k, r) for k, r in self._scan_records() if r.expires_at <= now]
        removed = 0
        prefix_length = len(self.prefix)
        with self._driver_errors("purge expired sessions"):
            for record_key, _record_found in expired:
                # Re-checked inside the script: a touch in between keeps the session.
                removed += int(self._delete(keys=[record_key],
                                            args=[self._user_prefix, record_key[prefix_length:], repr(now)]))
        user_pattern = _GLOB_SPECIAL.sub(r"\\\1", self._user_prefix) + "*"
        for batch in self._scan(user_pattern, "set"):
            with self._driver_errors("prune user session indexes"):
                for users in batch:
                    self._prune(keys=[users], args=[self.prefix, users[len(self._user_prefix):]])
        return removed

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
