"""Session creation on a full memcached global index against an empty one, in one run.

Run from the repository root::

    .venv/bin/python benchmarks/memcached_index.py [--sessions 4000] [--sample 200]

Starts a private memcached with ``-I 64k`` (a global-index bucket then holds
about 1,450 entries), builds a store with one bucket, and creates ``--sessions``
anonymous sessions.  It prints the time and the memcached calls per creation for
the first ``--sample`` creations (empty index) and the last ones (the bucket long
full), and their ratios.  The ratio is the result: absolute times depend on the
machine.  Before generations (0.3), a creation on a full bucket compacted it
every time: 13 calls instead of 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from kitsession_wsgi.stores.memcached import MemcachedStore  # noqa: E402
from kitsession_wsgi.testing import make_record  # noqa: E402
from servers import PrivateServer, free_port  # noqa: E402


class Counting:
    """A pymemcache client whose calls are counted (every call still goes to the server)."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.target, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attribute(*args, **kwargs)

        return counted


def sample(store: MemcachedStore, client: Counting, count: int) -> tuple[float, float]:
    """Microseconds and memcached calls per creation over ``count`` creations."""
    records = [make_record(store) for _ in range(count)]
    calls = client.calls
    start = time.perf_counter()
    for record in records:
        store.create(record)
    elapsed = time.perf_counter() - start
    return elapsed / count * 1e6, (client.calls - calls) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=4000)
    parser.add_argument("--sample", type=int, default=200)
    options = parser.parse_args()
    binary = shutil.which("memcached")
    if binary is None:
        print("memcached is not installed", file=sys.stderr)
        return 1
    port = free_port()
    argv = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "256", "-I", "64k",
            "-o", "slab_chunk_max=32768"] + (["-u", "root"] if os.geteuid() == 0 else [])
    server = PrivateServer("memcached", argv, port).start()
    try:
        real = MemcachedStore.from_servers([server.address], max_item_bytes=64 * 1024, index_buckets=1)
        client = Counting(real.client)
        store = MemcachedStore(client, max_item_bytes=64 * 1024, index_buckets=1)  # type: ignore[arg-type]
        store.create(make_record(store))  # the bucket's first entry creates it
        early_us, early_calls = sample(store, client, options.sample)
        sample(store, client, max(0, options.sessions - 2 * options.sample - 1))
        late_us, late_calls = sample(store, client, options.sample)
        listed = len(store.get_all())
        print(f"early (empty index): {early_us:8.0f} us, {early_calls:.2f} calls per creation")
        print(f"late (full bucket):  {late_us:8.0f} us, {late_calls:.2f} calls per creation")
        print(f"ratio late/early:    {late_us / early_us:8.2f}x time, {late_calls / early_calls:.2f}x calls")
        print(f"get_all lists {listed} of {options.sessions} sessions")
        store.close()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
