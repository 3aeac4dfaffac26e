"""The servers of one run, the peers' packages, and counting commands on a server.

memcached, Redis and a Redis Cluster are started privately on free loopback
ports by the test suite's helpers (``tests/servers.py``), the first time a
scenario asks for them, and stopped at the end of the run.  A server that
cannot start, or a package that is not installed, raises
:class:`~kitbench.harness.Skip`: the row says why instead of failing.

The command counters read the server's own statistics (memcached ``stats``,
Redis ``INFO``), so they also see round trips a client makes on its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .harness import Caller, Skip

#: what a skipped peer's row tells the reader to run (tests/test_benchmarks.py looks for it)
INSTALL_PEERS = "pip install -r benchmarks/requirements.txt"


def need(module: str, what: str) -> Any:
    """Import ``module`` or skip the scenario, naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Skip(f"{what} not installed ({exc.name or module}); {INSTALL_PEERS}") from None


class Servers:
    """Private memcached, Redis and Redis Cluster on free ports (tests/servers.py), stopped at the end."""

    def __init__(self) -> None:
        self._started: dict[str, Any] = {}
        self._errors: dict[str, str] = {}

    def _get(self, kind: str, starter: str, unavailable: str) -> Any:
        if kind not in self._started and kind not in self._errors:
            try:
                from tests import servers

                self._started[kind] = getattr(servers, starter)()
            except BaseException as exc:  # pytest's skip (a missing binary) is a BaseException
                self._errors[kind] = f"{unavailable}: {exc}"
        if kind not in self._started:
            raise Skip(self._errors[kind])
        return self._started[kind]

    def memcached(self) -> Any:
        return self._get("memcached", "start_memcached", "memcached unavailable")

    def redis(self) -> Any:
        return self._get("redis", "start_redis", "redis-server unavailable")

    def redis_cluster(self) -> Any:
        """A private Redis Cluster (3 masters + 3 replicas)."""
        return self._get("redis_cluster", "start_redis_cluster", "Redis Cluster unavailable")

    def stop(self) -> None:
        for server in self._started.values():
            server.stop()


def memcached_command_counter(port: int) -> Callable[[], int]:
    """Commands the memcached at ``port`` has served so far (a difference of two calls is what matters)."""
    from pymemcache.client.base import Client

    admin = Client(("127.0.0.1", port), no_delay=True)
    # cmd_get counts get and gets; cmd_set counts set, add, append and cas (cas_* are subsets)
    fields = ("cmd_get", "cmd_set", "cmd_touch", "cmd_flush", "delete_hits", "delete_misses",
              "incr_hits", "incr_misses", "decr_hits", "decr_misses")

    def total() -> int:
        stats = admin.stats()
        return sum(int(stats.get(f.encode(), stats.get(f, 0))) for f in fields)

    return total


def redis_command_counter(port: int) -> Callable[[], int]:
    """Commands the Redis at ``port`` has processed so far."""
    import redis

    admin = redis.Redis(host="127.0.0.1", port=port)

    def total() -> int:
        # INFO counts itself once per call; the caller takes a difference of two calls
        return int(admin.info("stats")["total_commands_processed"])

    return total


def redis_cluster_command_counter(ports: list[int]) -> Callable[[], int]:
    """Commands the cluster's masters at ``ports`` have processed so far."""
    import redis

    admins = [redis.Redis(host="127.0.0.1", port=port) for port in ports]

    def total() -> int:
        # the masters only (a replica counts what it replays); INFO counts itself on each node,
        # which the caller's difference of two calls takes out
        return sum(int(admin.info("stats")["total_commands_processed"]) for admin in admins)

    return total


def server_probe(total: Callable[[], int], probes: list[tuple[str, Caller]],
                 measured: dict[str, int] | None = None) -> str:
    """Server commands per request for each probe, counted by the server; also put into ``measured``."""
    baseline = total()
    idle = total() - baseline  # what one INFO / stats call adds by itself
    parts = []
    for label, caller in probes:
        caller()
        before = total()
        caller()
        after = total()
        if measured is not None:
            measured[label] = after - before - idle
        parts.append(f"{label} {after - before - idle}")
    return ", ".join(parts)
