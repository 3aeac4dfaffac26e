"""How fast PeeweeStore.purge_expired removes 100,000 expired sessions, in batches.

Run from the repository root::

    .venv/bin/python benchmarks/purge.py [--rows 100000] [--batch 5000]

SQLite uses a file in a temporary directory (WAL, as ``PeeweeStore.from_url``
sets it up); PostgreSQL and MariaDB use ``KITSESSION_POSTGRES_URL`` /
``KITSESSION_MYSQL_URL`` (defaults as in ``tests/servers.py``) and are skipped
with a note when unreachable.  Every run uses its own table and drops it.
Rows are bulk-inserted with multi-row INSERTs; only the purge is timed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import peewee  # noqa: E402

from kitsession_wsgi import session_key  # noqa: E402
from kitsession_wsgi.stores.peewee import PeeweeStore  # noqa: E402

POSTGRES_URL = os.environ.get("KITSESSION_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("KITSESSION_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
COLUMNS = ("session_key", "data", "user_id", "created_at", "updated_at", "expires_at", "version")


def bulk_insert(store: PeeweeStore, rows: list[tuple[Any, ...]], chunk: int = 1000) -> None:
    database = store.database
    q0, q1 = database.quote[0], database.quote[1]
    head = f"INSERT INTO {q0}{store.table_name}{q1} ({', '.join(q0 + c + q1 for c in COLUMNS)}) VALUES "
    placeholder = "(" + ", ".join([database.param] * len(COLUMNS)) + ")"
    with database.atomic():
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            database.execute_sql(head + ", ".join([placeholder] * len(part)), [v for row in part for v in row])


def run(name: str, store: PeeweeStore, count: int) -> tuple[str, int, float, int] | None:
    try:
        store.create_tables()
    except Exception as exc:  # noqa: BLE001 - report and go on with the next database
        print(f"{name}: skipped ({type(exc).__name__}: {str(exc).strip()})", file=sys.stderr)
        return None
    try:
        now = time.time()
        expired = [
            (session_key(f"bench-{i}"), '{"cart":[1,2,3]}', f"i:{i % 5000}", now - 7200, now - 3600, now - 60, 1)
            for i in range(count)
        ]
        live = [(session_key(f"live-{i}"), "{}", "i:1", now, now, now + 3600, 1) for i in range(1000)]
        bulk_insert(store, expired + live)
        started = time.perf_counter()
        removed = store.purge_expired(now)
        seconds = time.perf_counter() - started
        left = len(store.get_all())
        assert removed == count and left == len(live), (removed, left)
        return name, removed, seconds, left
    finally:
        store.drop_tables()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    table = f"kitsession_bench_{secrets.token_hex(3)}"
    options = {"table_name": table, "purge_batch_size": args.batch}

    results = []
    with tempfile.TemporaryDirectory() as directory:
        sqlite = PeeweeStore.from_url(f"sqlite:///{os.path.join(directory, 'bench.db')}", **options)
        results.append(run("SQLite " + ".".join(map(str, peewee.sqlite3.sqlite_version_info)), sqlite, args.rows))
    for name, url in (("PostgreSQL", POSTGRES_URL), ("MariaDB", MYSQL_URL)):
        results.append(run(name, PeeweeStore.from_url(url, **options), args.rows))

    print(f"purge_expired: {args.rows:,} expired rows (+1,000 live kept), {args.batch:,} per DELETE")
    print(f"{'database':<16} {'rows':>9} {'seconds':>9} {'rows/s':>10} {'statements':>11}")
    for result in results:
        if result is None:
            continue
        name, removed, seconds, _ = result
        statements = removed // args.batch + 1
        print(f"{name:<16} {removed:>9,} {seconds:>9.3f} {removed / seconds:>10,.0f} {statements:>11}")


if __name__ == "__main__":
    main()
