#!/usr/bin/env python
"""Exploration: candidate ways to do a piece of a read, each timed alone next to what the code does now.

Not part of the report of ``benchmarks/run.py``; run it by hand when weighing a
change to the read path::

    .venv/bin/python benchmarks/explore_read_pieces.py

Each pair is "what the library does" and "a candidate", timed as the report's
"Pieces of a read" are (the fastest of 15 short repetitions, in us).  Inside a
request each piece costs more (cold caches), so compare the two rows of a pair,
not a row with a request.  Needs only the dev extras (MemoryStore, SQLite).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kitbench.harness import PAYLOAD, SECRET, environ_for  # noqa: E402
from kitbench.roundtrips import store_select  # noqa: E402
from kitbench.timing import calibrate, timed  # noqa: E402

SETTINGS = {"cell_seconds": 0.02, "warmup_seconds": 0.02, "min_n": 10, "max_n": 50_000}
Candidate = tuple[str, str, Callable[[], Any]]


def cookie_candidates() -> list[Candidate]:
    from kitsession_wsgi.cookies import cookie_header

    environ = environ_for("/read", "session=s%3Aabc.def")
    return [("cookie", "cookie_header(environ) (what the adapters call)", lambda: cookie_header(environ)),
            ("cookie", "candidate: environ.get('HTTP_COOKIE') (what an adapter already holds)",
             lambda: environ.get("HTTP_COOKIE"))]


def session_candidates() -> list[Candidate]:
    from kitsession_wsgi import MemoryStore, Session, SessionManager

    manager = SessionManager(MemoryStore(), keys=[SECRET])
    session = manager.create_session(data=dict(PAYLOAD))
    assert session.handle is not None
    record = manager.store.get(session.handle)
    assert record is not None and session.id is not None
    session_id, data = session.id, dict(PAYLOAD)

    def via_init() -> Any:
        return Session(id=session_id, handle=record.key, data=data, user_id=record.user_id, user=record.user,
                       created_at=record.created_at, updated_at=record.updated_at,
                       expires_at=record.expires_at, is_new=False)

    return [("core", "Session.from_record (what a read builds)", lambda: Session.from_record(record, session_id, data)),
            ("core", "for comparison: the validating Session(...) constructor", via_init)]


def header_candidates() -> list[Candidate]:
    from werkzeug.datastructures import Headers

    base = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "15")]

    def set_item() -> Any:
        headers = Headers(base)
        if "Vary" not in headers:
            headers["Vary"] = "Cookie"
        return headers

    def add() -> Any:
        headers = Headers(base)
        if "Vary" not in headers:
            headers.add("Vary", "Cookie")
        return headers

    return [("headers", "Headers(...) + 'Vary' in + headers['Vary'] = 'Cookie'", set_item),
            ("headers", "candidate: Headers(...) + 'Vary' in + headers.add('Vary', 'Cookie')", add),
            ("headers", "floor: Headers(...) alone", lambda: Headers(base))]


def sqlite_candidates(directory: Path) -> list[Candidate]:
    from kitsession_wsgi import SessionRecord, session_key
    from kitsession_wsgi.stores.peewee import PeeweeStore

    store = PeeweeStore.from_url(f"sqlite:///{directory / 'explore.db'}")
    store.create_tables()
    now = time.time()
    key = session_key(store.create_id())
    store.create(SessionRecord(key=key, data=json.dumps(PAYLOAD), user_id=None, created_at=now, updated_at=now,
                               expires_at=now + 3600, version=1))
    database, sql = store.database, store_select(store.table_name)
    connection = database.connection()
    return [("store get", "SQLite: peewee execute_sql SELECT by primary key",
             lambda: database.execute_sql(sql, (key,)).fetchall()),
            ("store get", "SQLite: candidate: sqlite3 connection.execute (peewee's connection, no wrapper)",
             lambda: connection.execute(sql, (key,)).fetchall()),
            ("store get", "SQLite: PeeweeStore.get", lambda: store.get(key))]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="kitsession-explore-") as directory:
        items = cookie_candidates() + session_candidates() + header_candidates() + sqlite_candidates(Path(directory))
        counts = {label: calibrate(call, SETTINGS) for _, label, call in items}
        times: dict[str, list[float]] = {label: [] for _, label, _ in items}
        for _ in range(15):
            for _, label, call in items:
                times[label].append(timed(call, counts[label]))
    print("| group | piece | us |\n|---|---|---:|")
    for group, label, _ in items:
        print(f"| {group} | {label} | {min(times[label]):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
