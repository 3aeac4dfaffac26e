"""Pieces of a read, each timed alone: codecs, cookie parsing and signing, the core, each store's get.

Isolated micro-benchmarks of the steps a read goes through, built from the
scenarios that ran (a piece whose scenario was skipped is left out).  Each
piece is timed in 3x the repetitions, a third as long each, and the minimum is
reported: preemption by other work only ever adds time.  Inside a full request
each piece costs more (cold caches; about 3x was measured for cookie parsing
and verification), so these compare alternatives, and the profiles
(:mod:`kitbench.profiles`) give the in-place split.  Candidate changes (faster
codecs, other ways to add a header, ...) are measured by
``benchmarks/explore_read_pieces.py``, not here.
"""

from __future__ import annotations

import contextlib
import json
import traceback
from collections.abc import Callable
from typing import Any

from .bench import Bench
from .harness import PAYLOAD, check, environ_for, log
from .roundtrips import store_select
from .timing import calibrate, timed

Piece = tuple[str, str, Callable[[], Any]]


def codec_pieces() -> list[Piece]:
    from kitsession_wsgi import JSONSerializer

    text = json.dumps(PAYLOAD, separators=(",", ":"))
    plain = JSONSerializer()
    items: list[Piece] = [("data codec", "json.loads (stdlib)", lambda: json.loads(text)),
                          ("data codec", "JSONSerializer.dumps (stdlib, compact)", lambda: plain.dumps(PAYLOAD))]
    with contextlib.suppress(ImportError):
        from kitsession_wsgi.flask import FlaskSessionSerializer

        tagged = FlaskSessionSerializer()
        items += [("data codec", "FlaskSessionSerializer.loads (Flask tagged JSON)", lambda: tagged.loads(text)),
                  ("data codec", "FlaskSessionSerializer.dumps (Flask tagged JSON)", lambda: tagged.dumps(PAYLOAD))]
    with contextlib.suppress(ImportError):
        import msgspec

        decoder, encoder = msgspec.json.Decoder(), msgspec.json.Encoder()
        items += [("data codec", "msgspec.json decode (same JSON text)", lambda: decoder.decode(text)),
                  ("data codec", "msgspec.json encode", lambda: encoder.encode(PAYLOAD))]
    return items


def memory_pieces(bench: Bench) -> list[Piece]:
    """The cookie and core steps, on the kit-memory scenario's manager and session."""
    from kitsession_wsgi import Session, session_key
    from kitsession_wsgi.cookies import cookie_header, read_cookies

    memory = bench.scenario("kit-memory")
    if memory is None:
        return []
    manager = memory.manager
    environ = environ_for("/read", memory.cookie)
    header = cookie_header(environ)
    assert header is not None
    value = read_cookies(header, manager.name)[0]
    signer = manager.signer
    assert signer is not None
    session_id = signer.unsign(value).session_id
    items: list[Piece] = [
        ("cookie", "cookie_header(environ)", lambda: cookie_header(environ)),
        ("cookie", "read the session cookie from the header (werkzeug parse_cookie + unquote)",
         lambda: read_cookies(header, "session")),
        ("cookie", "CookieSigner.unsign (HMAC-SHA256, constant-time compare)", lambda: signer.unsign(value)),
        ("cookie", "session_key(id) (SHA-256 digest)", lambda: session_key(session_id)),
        ("core", "initialize_session(environ), cookie cache hit, MemoryStore",
         lambda: manager.initialize_session(environ)),
        ("core", "initialize_session + commit (unchanged), cookie cache hit",
         lambda: manager.commit(manager.initialize_session(environ))),
    ]
    uncached = bench.scenario("kit-memory-nocache")
    if uncached is not None:
        environ_nc = environ_for("/read", uncached.cookie)
        items.append(("core", "initialize_session(environ), cookie cache off",
                      lambda: uncached.manager.initialize_session(environ_nc)))
    record = memory.store.get(memory.handle)
    data = dict(PAYLOAD)
    items += [("store get", "MemoryStore.get", lambda: memory.store.get(memory.handle)),
              ("core", "Session for a record: Session.from_record (what a read builds)",
               lambda: Session.from_record(record, session_id, data))]
    return items


def sqlite_pieces(bench: Bench) -> list[Piece]:
    from kitsession_wsgi import SessionRecord

    scenario = bench.scenario("kit-sqlite")
    if scenario is None:
        return []
    store, handle = scenario.store, scenario.handle
    database, sql = store.database, store_select(store.table_name)
    record = store.get(handle)
    return [("store get", "SQLite: peewee execute_sql SELECT by primary key",
             lambda: database.execute_sql(sql, (handle,)).fetchall()),
            ("store get", "SQLite: PeeweeStore.get", lambda: store.get(handle)),
            ("store get", "SessionRecord(...) (frozen slots dataclass), built by every store read",
             lambda: SessionRecord(key=record.key, data=record.data, user_id=record.user_id,
                                   created_at=record.created_at, updated_at=record.updated_at,
                                   expires_at=record.expires_at, version=record.version))]


def server_pieces(bench: Bench) -> list[Piece]:
    """PostgreSQL, memcached and Redis gets: the store's, and the bare driver's of the same item.

    The item keys follow the layouts the stores' module docstrings document
    (``key_prefix + key`` for memcached, ``prefix + key`` for Redis).
    """
    items: list[Piece] = []
    pg = bench.scenario("kit-postgres")
    if pg is not None:
        items.append(("store get", "PostgreSQL: PeeweeStore.get", lambda: pg.store.get(pg.handle)))
    mc = bench.scenario("kit-memcached")
    if mc is not None:
        from pymemcache.client.base import Client

        bare_client = Client(("127.0.0.1", bench.servers.memcached().port), no_delay=True, default_noreply=False)
        item_key = mc.store.key_prefix + mc.handle
        check(bare_client.get(item_key) is not None, f"no memcached item {item_key!r}: the store's layout changed")
        items += [("store get", "memcached: pymemcache Client.get of the same item", lambda: bare_client.get(item_key)),
                  ("store get", "memcached: the store's own client .get of the same item",
                   lambda: mc.store.client.get(item_key)),
                  ("store get", "memcached: MemcachedStore.get", lambda: mc.store.get(mc.handle))]
    rd = bench.scenario("kit-redis")
    if rd is not None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=bench.servers.redis().port)
        client.set("bench:string", json.dumps(PAYLOAD) + "x" * 100)
        record_key = rd.store.prefix + rd.handle
        check(client.get(record_key) is not None, f"no Redis string {record_key!r}: the store's layout changed")
        items += [("store get", "Redis: GET of a ~300-byte string", lambda: client.get("bench:string")),
                  ("store get", "Redis: GET of the session's string", lambda: client.get(record_key)),
                  ("store get", "Redis: RedisStore.get", lambda: rd.store.get(rd.handle))]
    return items


def run_pieces(bench: Bench) -> list[tuple[str, str, float]]:
    """(group, piece, us) for every piece; a group that cannot be built is a "not measured" row."""
    settings = {**bench.settings, "cell_seconds": bench.settings["cell_seconds"] / 3}
    items: list[Piece] = []
    errors: list[str] = []
    groups: list[tuple[str, Callable[[], list[Piece]]]] = [
        ("codecs", codec_pieces), ("memory store and core pieces", lambda: memory_pieces(bench)),
        ("SQLite pieces", lambda: sqlite_pieces(bench)), ("server pieces", lambda: server_pieces(bench))]
    for name, build in groups:
        try:
            items += build()
        except Exception as exc:  # a piece that cannot be built is reported, it does not fail the run
            log(traceback.format_exc())
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    times: dict[str, list[float]] = {label: [] for _, label, _ in items}
    counts = {label: calibrate(call, settings) for _, label, call in items}
    for _ in range(3 * settings["reps"]):
        for _, label, call in items:
            times[label].append(timed(call, counts[label]))
    return ([(group, label, min(times[label])) for group, label, _ in items]
            + [("not measured", error, float("nan")) for error in errors])
