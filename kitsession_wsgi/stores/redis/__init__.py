"""Sessions in Redis through redis-py: a standalone server, Sentinel, or Redis Cluster.

One class, :class:`RedisStore`, for both layouts: the client's type picks one
(``redis.Redis``, standalone or from Sentinel, or ``redis.cluster.RedisCluster``).

Layout under ``prefix`` (default ``"sess:"``):

* ``sess:<key>``: one STRING per session holding the whole record, expiring
  with it (``EXPIRE`` in seconds).  Reading a session is exactly one ``GET``.
  The value is the record layout shared with the memcached store: an ASCII
  header line, then the user's tag, the record key and the data, as UTF-8
  (lone surrogates kept with ``surrogatepass``)::

      K1 <version> <created_at> <updated_at> <expires_at> <user bytes> <key bytes>\\n<user><key><data>

  The Lua scripts read only the header (a ``string.match`` anchored at the
  start) and never look into the data.
* ``sess:user:<i:5|s:alice>``: the user's index, for listing and "sign out
  everywhere" without scanning: a SET of record keys on one Redis, a HASH of
  record key -> ``"<version> <nonce>"`` on a cluster.  It expires with the
  user's longest-lived session (plus an hour on a cluster).
* ``sess:lock:<key>``: per-session locks (``SET NX PX``).

On one Redis every write is one atomic Lua script (``_standalone.py``).  On a cluster every
script touches one key, and the contract's promises are kept by the order of the steps and
compare-and-delete instead (the argument is written out in ``_cluster.py``, next to the code).
The scripts are in ``_scripts.py``, what both layouts share in ``_base.py``.

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

from ._store import RedisStore

__all__ = ["RedisStore"]
