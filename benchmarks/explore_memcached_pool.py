"""Exploration: what the memcached store's client costs per request, against plain pymemcache.

Not part of the benchmark table (``benchmarks/run.py``); run it alone from the repository root::

    python benchmarks/explore_memcached_pool.py [--rounds 40] [--requests 200]

It starts a private memcached on a free loopback port (``tests/servers.py``),
builds one Flask app with ``KitSession`` per client variant over that server,
logs each in once, then times a read request (the session read, unchanged)
and a write request (one key set to a new value) of every variant,
interleaved in one process: each round runs every variant once, in a rotated
order, ``--requests`` calls each, and the figures are medians over rounds
(absolute times drift on a shared machine; differences inside one round hold).  "wall" is per-request elapsed time,
"cpu" this thread's CPU time per request (blind to the wait for memcached,
which every variant shares, so it shows the client's own Python cost with
less noise).

Variants:

* ``from_servers``: ``MemcachedStore.from_servers([address])``, what the
  library builds for one server.
* ``PooledClient``: ``MemcachedStore(pymemcache PooledClient(...))`` with the
  same settings (``no_delay``, confirmed writes, 1 s timeouts).
* ``Client``: ``MemcachedStore(pymemcache Client(...))``, one connection with
  no pool at all: not thread-safe, the floor a pool is measured against.
* ``MemcachedPool``: only when run against the code before its removal
  (commit bafafe4); the "no parser" variant of that measurement switched
  the pool's private reader off and is not kept here.

The outcome (0.1, before the change) is recorded in ``benchmarks/notes/stores.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

PAYLOAD = {"email": "ada@example.com", "name": "Ada Lovelace", "roles": ["admin", "editor"],
           "cart": [{"sku": f"SKU-{i}", "qty": i} for i in range(4)], "theme": "dark", "locale": "en-GB"}


class Request:
    """One WSGI call with a fixed environ, body drained and closed (no test client: it adds 40-70 us)."""

    def __init__(self, app: Any, path: str, cookie: str | None = None) -> None:
        from werkzeug.test import EnvironBuilder

        builder = EnvironBuilder(path=path, headers={"Cookie": cookie} if cookie else {})
        self.app, self.environ = app, builder.get_environ()
        builder.close()
        self.status, self.headers, self.body = "", [], b""

    def _start(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        self.status, self.headers = status, headers

    def __call__(self) -> None:
        body = self.app(self.environ.copy(), self._start)
        try:
            self.body = b"".join(body)
        finally:
            getattr(body, "close", lambda: None)()


def build_app(store: Any) -> tuple[Request, Request, Callable[[], None]]:
    """A Flask app with KitSession over ``store``: its read and write requests and a check of both."""
    from flask import Flask, session

    from kitsession_wsgi.flask import KitSession

    app = Flask(f"explore_{id(store)}")
    app.config["SECRET_KEY"] = "explore-secret-0123456789abcdef"
    KitSession(app, store=store)
    state = {"n": 0}

    @app.get("/login")
    def login() -> str:
        session.update(PAYLOAD)
        return "ok"

    @app.get("/read")
    def read() -> str:
        return str(session.get("email"))

    @app.get("/write")
    def write() -> str:
        state["n"] += 1
        session["n"] = state["n"]
        return str(state["n"])

    login_request = Request(app, "/login")
    login_request()
    cookie = next(v for k, v in login_request.headers if k.lower() == "set-cookie").split(";", 1)[0]
    reader, writer = Request(app, "/read", cookie), Request(app, "/write", cookie)

    def check() -> None:
        reader()
        writer()
        assert reader.status.startswith("200") and reader.body == b"ada@example.com", reader.body
        assert not any(k.lower() == "set-cookie" for k, _ in reader.headers), "a read set a cookie"
        assert writer.status.startswith("200") and writer.body == str(state["n"]).encode(), writer.body

    check()
    return reader, writer, check


def variants(address: str) -> dict[str, Any]:
    from pymemcache.client.base import Client, PooledClient

    from kitsession_wsgi.stores import memcached

    options = {"no_delay": True, "default_noreply": False, "connect_timeout": 1.0, "timeout": 1.0}
    stores: dict[str, Any] = {
        "from_servers": memcached.MemcachedStore.from_servers([address]),
        "PooledClient": memcached.MemcachedStore(PooledClient(address, **options)),
        "Client": memcached.MemcachedStore(Client(address, **options)),
    }
    pool_class = getattr(memcached, "MemcachedPool", None)
    if pool_class is not None:
        # only when run against the code before the pool's removal (commit bafafe4)
        stores["MemcachedPool"] = memcached.MemcachedStore(pool_class(address, **options))
    return stores


def timed(call: Callable[[], None], count: int) -> tuple[float, float]:
    """Microseconds per call: wall and this thread's CPU."""
    wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(count):
        call()
    return (time.perf_counter_ns() - wall) / count / 1000, (time.thread_time_ns() - cpu) / count / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--requests", type=int, default=200, help="calls per variant per round")
    args = parser.parse_args()

    from servers import start_memcached

    server = start_memcached()
    try:
        stores = variants(server.address)
        apps = {name: build_app(store) for name, store in stores.items()}
        names = list(apps)
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for kind, index in (("read", 0), ("write", 1)):
            for name in names:
                apps[name][index]()  # warm
            for round_number in range(args.rounds):
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    results.setdefault((kind, name), []).append(timed(apps[name][index], args.requests))
        for _reader, _writer, check in apps.values():
            check()
        report(results, names, args)
        for store in stores.values():
            store.close()
    finally:
        server.stop()


def report(results: dict[tuple[str, str], list[tuple[float, float]]], names: list[str],
           args: argparse.Namespace) -> None:
    print(f"# KitSession on memcached: {args.rounds} rounds x {args.requests} requests per variant, "
          f"interleaved; medians, us per request")
    print(f"{'request':<7} {'variant':<26} {'wall':>8} {'cpu':>8} {'wall - PooledClient':>20} {'cpu - PooledClient':>20}")
    for kind in ("read", "write"):
        reference = results[(kind, "PooledClient")]
        for name in names:
            rows = results[(kind, name)]
            wall = statistics.median(r[0] for r in rows)
            cpu = statistics.median(r[1] for r in rows)
            # Differences paired within a round, then the median: the drift between rounds cancels.
            dwall = statistics.median(r[0] - p[0] for r, p in zip(rows, reference))
            dcpu = statistics.median(r[1] - p[1] for r, p in zip(rows, reference))
            wall_share = 100 * dwall / statistics.median(p[0] for p in reference)
            cpu_share = 100 * dcpu / statistics.median(p[1] for p in reference)
            print(f"{kind:<7} {name:<26} {wall:8.1f} {cpu:8.1f} {dwall:+10.1f} ({wall_share:+5.1f}%) "
                  f"{dcpu:+10.1f} ({cpu_share:+5.1f}%)")


if __name__ == "__main__":
    main()
