"""redis-py, imported once for the Redis stores, and which of its errors are outages.

.. versionadded:: 0.2
"""

from __future__ import annotations

from ...errors import StoreUnavailable

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

__all__ = ["ClusterNode", "ExponentialBackoff", "RedisCluster", "Retry", "is_unavailable", "quick_retry", "redis",
           "translate"]

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


def is_unavailable(exc: BaseException) -> bool:
    """Whether a redis-py error means the server (or a cluster master) cannot serve us now."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    return isinstance(exc, ResponseError) and str(exc).upper().startswith(_CLUSTER_STATE_REPLIES)


def translate(exc: Exception, action: str) -> Exception | None:
    """The :class:`~kitsession_wsgi.StoreUnavailable` for an outage while doing ``action``; ``None`` otherwise."""
    if not is_unavailable(exc):
        return None
    return StoreUnavailable(f"Redis could not {action}: {type(exc).__name__}: {exc}", store="redis")


def quick_retry() -> Retry:
    """One quick retry (enough to replace a connection a restarted server closed) instead of
    redis-py's ten, and none after a timeout."""
    # Only a refused or closed connection is retried: a timeout retried would wait again,
    # past store_timeout.
    return Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1, supported_errors=(RedisConnectionError,))
