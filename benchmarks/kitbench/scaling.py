"""Store size: a read, and ``remove_all_sessions_for_user``, against a small and a large store.

A read through Flask is timed against stores of ``scale_small`` and
``scale_large`` sessions, interleaved (A B A B in sub-rounds);
``remove_all_sessions_for_user`` for a user with 3 sessions is timed next to
``remove_small`` and ``scale_large`` other sessions, alternating one call each.
The memory store is filled through its insert path (``create``); SQLite with one
``executemany`` transaction into the store's own table, whose columns the
``PeeweeStore`` module docstring documents.  Filling the 1,000,000-session SQLite
store is most of a full run.
"""

from __future__ import annotations

import contextlib
import gc
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from .bench import Bench, matches
from .harness import PAYLOAD, CheckFailed, Scenario, check, log
from .scenarios import kit_flask, wire_cookie_cells
from .timing import interleaved_pair

#: fourteen days, as the records of a default manager
LIFETIME = 14 * 86400


def fill_memory(store: Any, count: int, user_of: Callable[[int], Any]) -> None:
    from kitsession_wsgi import SessionRecord, session_key

    now = time.time()
    text = json.dumps(PAYLOAD, separators=(",", ":"))
    for i in range(count):
        store.create(SessionRecord(key=session_key(f"filler-{i}"), data=text, user_id=user_of(i),
                                   created_at=now, updated_at=now, expires_at=now + LIFETIME, version=1))


def fill_sqlite(store: Any, count: int, user_of: Callable[[int], Any]) -> None:
    """Bulk insert into the store's own table (its documented schema), one transaction, executemany."""
    from kitsession_wsgi import session_key
    from kitsession_wsgi.stores.base import user_index_key

    now = time.time()
    text = json.dumps(PAYLOAD, separators=(",", ":"))
    database = store.database
    connection = database.connection()
    # user_id holds the type-tagged text ("i:5") when the store has no user_model
    sql = (f'INSERT INTO "{store.table_name}" (session_key, data, user_id, created_at, updated_at, expires_at, '
           "version) VALUES (?, ?, ?, ?, ?, ?, ?)")
    batch = 50_000
    with database.atomic():
        for start in range(0, count, batch):
            rows = [(session_key(f"filler-{i}"), text, user_index_key(user_of(i)), now, now, now + LIFETIME, 1)
                    for i in range(start, min(count, start + batch))]
            connection.executemany(sql, rows)
    database.execute_sql("ANALYZE")


def other_user(i: int) -> int:
    return 100_000 + i // 4  # four sessions per other user


def remove_all_once(manager: Any, user_id: int = 7) -> tuple[float, int]:
    """us of one remove_all_sessions_for_user for a user with 3 fresh sessions (one kept), and the count."""
    sessions = [manager.create_session(user_id=user_id, data={"device": i}) for i in range(3)]
    keep = sessions[0]
    gc.disable()
    start = time.perf_counter_ns()
    count = manager.remove_all_sessions_for_user(user_id, keep)
    elapsed = (time.perf_counter_ns() - start) / 1000
    gc.enable()
    manager.remove_session(keep)
    return elapsed, count


StoreMaker = Callable[[str], Any]
Filler = Callable[[Any, int, Callable[[int], Any]], None]


def store_kinds(bench: Bench, rows: list[dict[str, Any]]) -> list[tuple[str, StoreMaker, Filler, int]]:
    """(label, make a store, fill it, large size) for the memory store and, if peewee is here, SQLite."""
    from kitsession_wsgi import MemoryStore

    settings = bench.settings
    kinds: list[tuple[str, StoreMaker, Filler, int]] = [
        ("memory", lambda label: MemoryStore(max_sessions=None), fill_memory, settings["scale_large"]),
    ]
    try:
        from kitsession_wsgi.stores.peewee import PeeweeStore
    except ImportError as exc:
        rows.append({"store": "SQLite", "what": "skipped", "note": f"peewee store unavailable: {exc}"})
        return kinds

    def sqlite_store(label: str) -> Any:
        store = PeeweeStore.from_url(f"sqlite:///{bench.tmp / f'scale-{label}.db'}")
        store.create_tables()
        return store

    kinds.append(("SQLite", sqlite_store, fill_sqlite, settings["scale_sqlite_large"]))
    return kinds


def run_scaling(bench: Bench) -> list[dict[str, Any]]:
    """Read cost at two store sizes; remove_all_sessions_for_user with few and many other users' sessions."""
    settings = bench.settings
    rows: list[dict[str, Any]] = []
    for label, make, fill, large in store_kinds(bench, rows):
        if bench.only and not matches(f"scale-{label.lower()}", bench.only):
            continue
        small = settings["scale_small"]
        log(f"scaling: {label}, {small:,} and {large:,} sessions")
        apps = {}
        build_seconds = {}
        for size in (small, large):
            store = make(f"{size}")
            started = time.perf_counter()
            fill(store, size, other_user)
            build_seconds[size] = time.perf_counter() - started
            app, manager, state = kit_flask(f"scale_{label}_{size}", store)
            scenario = Scenario(f"scale-{label}-{size}", "")
            wire_cookie_cells(scenario, app, manager, state)
            apps[size] = (scenario, manager, store)
        gc.collect()
        gc.freeze()  # a million records must not make every GC pass of the timing slower
        (sa, _, _), (sb, mb, _) = apps[small], apps[large]
        try:
            a, b, ratio = interleaved_pair(sa.calls["read"], sb.calls["read"], settings,
                                           sa.checks["read"], sb.checks["read"])
            rows.append({"store": label, "what": "read, Flask", "small": small, "large": large,
                         "a": a, "b": b, "ratio": ratio,
                         "note": f"filled in {build_seconds[small]:.1f} s / {build_seconds[large]:.1f} s"})
            rows.append(remove_all_row(bench, label, make, fill, mb, large))
        except CheckFailed as exc:
            bench.failures.append(f"scaling {label}: {exc}")
            rows.append({"store": label, "what": "FAILED", "note": str(exc)})
        finally:
            gc.unfreeze()
            for _, _, store in apps.values():
                with contextlib.suppress(Exception):
                    store.close()
            apps.clear()
            gc.collect()
    return rows


def remove_all_row(bench: Bench, label: str, make: StoreMaker, fill: Filler, many_manager: Any,
                   large: int) -> dict[str, Any]:
    """remove_all_sessions_for_user next to a few other sessions, then next to ``large``, alternating."""
    settings = bench.settings
    few = make("few")
    fill(few, settings["remove_small"], other_user)
    few_manager = kit_flask(f"scale_{label}_few", few)[1]
    times_a, times_b, ratios = [], [], []
    for _ in range(settings["reps"]):
        few_times, many_times = [], []
        for _ in range(settings["remove_iterations"]):  # alternate: few, many, few, many, ...
            ta, removed_a = remove_all_once(few_manager)
            tb, removed_b = remove_all_once(many_manager)
            check(removed_a == 2 and removed_b == 2,
                  f"remove_all_sessions_for_user removed {removed_a} / {removed_b}, expected 2")
            few_times.append(ta)
            many_times.append(tb)
        times_a.append(statistics.median(few_times))
        times_b.append(statistics.median(many_times))
        ratios.append(times_b[-1] / times_a[-1])
    with contextlib.suppress(Exception):
        few.close()
    return {"store": label, "what": "remove_all_sessions_for_user (user with 3 sessions)",
            "small": settings["remove_small"], "large": large,
            "a": statistics.median(times_a), "b": statistics.median(times_b),
            "ratio": statistics.median(ratios), "note": ""}
