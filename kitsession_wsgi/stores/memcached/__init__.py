"""Sessions in memcached through pymemcache: one server, or a cluster with :class:`StrictHashClient`.

Each session is one memcached item under ``key_prefix + key``: the whole
:class:`~kitsession_wsgi.SessionRecord` in the layout the Redis store uses (a
``K1`` header line, then user, key and the data's JSON as it is, never escaped
inside another JSON document), with the record's lifetime as the item's expiry.
Reading a session is exactly one ``get`` on the node that holds it.

What memcached is, and what that costs:

* **memcached may evict sessions.**  It is a cache: when its memory is full it
  drops the least recently used items, sessions and indexes included, with no
  error.  An evicted session is a logged-out user; an evicted per-user index
  hides that user's sessions from "sign out everywhere" until they expire.
  Give memcached enough memory that it never evicts (watch the ``evictions``
  stat), or use Redis or SQL when losing a session is not acceptable.
* **Indexes.**  memcached cannot enumerate keys, so the store keeps them:

  - a per-user index (``key_prefix + "user:" + digest``) listing that user's
    record keys, used by ``get_all_for_user`` and ``delete_all_for_user``;
  - a global index split into ``index_buckets`` buckets
    (``key_prefix + "all:" + n``), used only by ``get_all`` and
    ``purge_expired``.  A bucket that reaches memcached's item size goes on
    in a new generation (``all:n.1``, ``all:n.2``, ..., the newest number
    counted in ``all:n:top``), so creating a session costs the same one
    append however many sessions exist, and ``get_all`` lists them all.

  Indexes carry no expiry (memcached may still evict them); an emptied index
  is removed.  Entries are added with ``append`` (atomic on the server, so concurrent
  logins never drop one another's entry; ``add`` creates a missing index) and
  removed with ``gets``/``cas`` retries.  Entries whose record is gone
  (deleted, expired or evicted) are pruned when an index is read; ``delete``
  removes the per-user entry at once and leaves the global one to that
  pruning.  Creating a session costs the record's ``add`` plus one append
  (two for a session with a user); the global index is sharded so that
  concurrent prunes rarely contend on one ``cas`` token.
  A global-index write that fails (its node is down) is logged, at most once a
  minute, not raised: the session still works and still expires on its
  memcached TTL, it is only missing from ``get_all``; that and an evicted index
  item are the only ways ``get_all`` misses a live session.  memcached expires items on its own, so ``purge_expired`` is
  only housekeeping: it compacts the global index (creation never does) and
  removes records the application's clock considers expired before their TTL.
* **Item size.**  memcached refuses items above its item size (``-I``, 1 MB by
  default); the store checks ``max_item_bytes`` before writing and raises
  :class:`~kitsession_wsgi.SessionDataError`.
* **Clusters.**  pymemcache's own ``HashClient`` answers a miss for a failing
  node and, after ``retry_attempts`` failures, moves that node's keys to the
  other nodes: both log users out silently.  :class:`StrictHashClient` (what
  :meth:`MemcachedStore.from_servers` builds) raises for the keys of a failing
  node instead, keeps serving the other nodes, and uses the node again once
  it answers (it fails fast for ``dead_timeout`` seconds in between).  The
  per-user index of a user lives on one node: while that node is down, new
  logins and "sign out everywhere" for that user raise
  :class:`~kitsession_wsgi.StoreUnavailable`, but reading existing sessions on
  healthy nodes keeps working.

One server is a pymemcache ``PooledClient``, a cluster a :class:`StrictHashClient`
of ``PooledClient`` nodes (``_client.py``); the store logic is in ``_store.py``, the
global index in ``_global_index.py``.
A connection pool and reply parser of the store's own saved about 7% of a read
request over pymemcache's, too little to keep a second pool and a protocol parser
in step with memcached, so the store uses pymemcache's public API only.

Writes are always confirmed (``noreply=False``), and a client created with
``ignore_exc=True`` is refused: an outage must never look like a missing session.

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._client import MemcacheClient, MemcachedNodeDown, StrictHashClient
from ._store import MemcachedStore

__all__ = ["MemcacheClient", "MemcachedNodeDown", "MemcachedStore", "StrictHashClient"]
