"""What the two Redis layouts share: keys, options, driver errors, ``WAIT``, reads, scans and locks.

:class:`RedisBase` owns the protocol; :class:`~._standalone.StandaloneLayout` (one Redis, whose
scripts touch a record and its user's SET together) and :class:`~._cluster.ClusterLayout` (every
script on one key) fill in the writes, the per-user calls and the few steps that differ (a
pipeline, a scan, pruning an index).

.. versionadded:: 0.2
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Union

from ...errors import ConfigurationError, StoreUnavailable
from .._format import decode_record, storage_id, to_bytes, to_text
from .._toolkit import DriverErrors, is_int, user_tag
from ..base import SessionRecord, SessionStore, SetResult, UserId
from . import _scripts
from ._driver import RedisCluster, redis, translate

__all__ = ["BATCH", "SCAN_COUNT", "Client", "RedisBase"]

Client = Union["redis.Redis", "RedisCluster"]

#: most index members one script (or one HSCAN and its record scripts) handles
BATCH = 200
SCAN_COUNT = 1000
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class RedisBase(SessionStore):
    """The shared half of a Redis store; build stores with :class:`~kitsession_wsgi.stores.redis.RedisStore`.

    Parameters as :class:`~kitsession_wsgi.stores.redis.RedisStore`.
    """

    #: ``True`` when the client is a ``RedisCluster`` (the one-key algorithms apply)
    is_cluster: ClassVar[bool]

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
        if not is_int(wait_replicas) or wait_replicas < 0:
            raise ConfigurationError("wait_replicas", f"must be an int >= 0, got {wait_replicas!r}")
        if not is_int(wait_timeout_ms) or wait_timeout_ms < 1:
            raise ConfigurationError("wait_timeout_ms", f"must be an int >= 1, got {wait_timeout_ms!r}")
        self.client = client
        self.prefix = prefix
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._user_prefix = prefix + "user:"
        self._release = client.register_script(_scripts.RELEASE)
        self._register(client.register_script)

    def _register(self, register: Callable[[str], Any]) -> None:
        """Register the layout's Lua scripts on the client (no round trip)."""
        raise NotImplementedError

    # -- keys, errors, WAIT ------------------------------------------------------------

    def _record_key(self, key: str) -> str:
        return self.prefix + storage_id(key)

    def _user_key(self, user_id: UserId) -> str:
        return self._user_prefix + user_tag(user_id)

    @staticmethod
    def _driver_errors(action: str) -> DriverErrors:
        """Outages inside become :class:`~kitsession_wsgi.StoreUnavailable` naming ``action``."""
        return DriverErrors(translate, action)

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
        """A plain pipeline on one connection to the server holding ``key``."""
        return self.client.pipeline(transaction=False)

    def _check_acknowledged(self, action: str, acknowledgements: Sequence[Any]) -> None:
        short = [int(n) for n in acknowledgements if int(n) < self.wait_replicas]
        if short:
            raise StoreUnavailable(
                f"Redis could not {action} durably: {min(short)} of {self.wait_replicas} replicas confirmed the "
                f"write within {self.wait_timeout_ms} ms (it is done on the master; retrying is safe)",
                store="redis",
            )

    # -- reads ----------------------------------------------------------------------------

    def get(self, key: str) -> SessionRecord | None:
        """The record under ``key``: one ``GET``.

        :raises StoreUnavailable: Redis cannot be reached.

        .. versionadded:: 0.1
        """
        with self._driver_errors("read a session"):
            raw = self.client.get(self._record_key(key))
        record = decode_record(raw)
        return record if record is not None and record.key == key else None

    def _load_raw(self, record_keys: Sequence[str]) -> list[Any]:
        """``GET`` of each key in one pipelined round trip (one per master on a cluster)."""
        if not record_keys:
            return []
        with self._driver_errors("read sessions"):
            pipeline = self._read_pipeline()
            for record_key in record_keys:
                pipeline.get(record_key)
            return list(pipeline.execute())

    def _read_pipeline(self) -> Any:
        return self.client.pipeline(transaction=False)

    def _load(self, record_keys: Sequence[str]) -> list[tuple[str, SessionRecord | None]]:
        return [(k, decode_record(raw)) for k, raw in zip(record_keys, self._load_raw(record_keys))]

    # -- everything -----------------------------------------------------------------------

    def _scan(self, pattern: str, kind: str) -> Iterator[list[str]]:
        """Batches of keys matching ``pattern`` of Redis type ``kind``."""
        cursor: Any = 0
        while True:
            with self._driver_errors("scan sessions"):
                cursor, keys = self.client.scan(cursor=cursor, match=pattern, count=SCAN_COUNT, _type=kind)
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
        with self._driver_errors("purge expired sessions"):
            for record_key, _record_found in expired:
                # Re-checked inside the script: a touch in between keeps the session.
                removed += self._delete_if_expired(record_key, now)
        user_pattern = _GLOB_SPECIAL.sub(r"\\\1", self._user_prefix) + "*"
        for batch in self._scan(user_pattern, self._index_type):
            for users in batch:
                self._prune_index(users[len(self._user_prefix):])
        return removed

    #: the Redis type of a user index
    _index_type: ClassVar[str]

    def _delete_if_expired(self, record_key: str, now: float) -> int:
        """Delete the record if it is still expired at ``now``; 1 when it was."""
        raise NotImplementedError

    def _prune_index(self, index: str) -> None:
        """Drop the entries of user index ``index`` whose records are gone or someone else's."""
        raise NotImplementedError

    # -- the half of the contract each layout writes -----------------------------------------

    def create(self, record: SessionRecord) -> bool:
        raise NotImplementedError

    def set(self, record: SessionRecord, expected_version: int) -> SetResult:
        raise NotImplementedError

    def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
        raise NotImplementedError

    def delete(self, key: str) -> bool:
        raise NotImplementedError

    def get_all_for_user(self, user_id: UserId) -> list[SessionRecord]:
        raise NotImplementedError

    def delete_all_for_user(self, user_id: UserId, except_key: str | None = None) -> int:
        raise NotImplementedError

    # -- locks ----------------------------------------------------------------------------

    def acquire_lock(self, key: str, token: str, ttl: float) -> bool:
        """Take the lock with ``SET NX PX``.

        .. versionadded:: 0.1
        """
        with self._driver_errors("take a session lock"):
            return bool(self.client.set(f"{self.prefix}lock:{storage_id(key)}", to_bytes(token), nx=True,
                                        px=max(1, math.ceil(ttl * 1000))))

    def release_lock(self, key: str, token: str) -> None:
        """Free the lock if ``token`` holds it (a Lua compare-and-delete).

        .. versionadded:: 0.1
        """
        with self._driver_errors("release a session lock"):
            self._release(keys=[f"{self.prefix}lock:{storage_id(key)}"], args=[to_bytes(token)])

    def close(self) -> None:
        """Close the client's connections.

        .. versionadded:: 0.1
        """
        self.client.close()
