"""PeeweeStore against real SQLite, PostgreSQL and MariaDB: the contract suite and SQL specifics."""

from __future__ import annotations

import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest
from playhouse import db_url

from kitsession_wsgi import (
    ConfigurationError,
    InvalidUserId,
    SessionManager,
    SetResult,
    StoreUnavailable,
    TablesMissing,
    session_key,
)
from kitsession_wsgi.stores.peewee import PeeweeStore
from kitsession_wsgi.testing import StoreContract, make_record
from servers import MYSQL_URL, POSTGRES_URL, service_missing

from polling import wait_until

#: one suffix per test run, so parallel runs against a shared server never collide
RUN = secrets.token_hex(3)
DIALECTS = ["sqlite", "postgres", "mysql"]


def unique_table(prefix: str = "kst") -> str:
    return f"{prefix}_{RUN}_{secrets.token_hex(3)}"


def open_database(dialect: str, tmp_path: Path) -> peewee.Database:
    """A connected peewee database of ``dialect``, or a skip (a CI failure) when its server is down."""
    if dialect == "sqlite":
        return peewee.SqliteDatabase(
            str(tmp_path / "sessions.db"),
            pragmas={"journal_mode": "wal", "foreign_keys": 1},
            timeout=10,
        )
    url = POSTGRES_URL if dialect == "postgres" else MYSQL_URL
    name = "PostgreSQL" if dialect == "postgres" else "MariaDB"
    database = db_url.connect(url)
    try:
        database.connect()
    except (peewee.OperationalError, peewee.InterfaceError) as exc:
        service_missing(f"{name} at {url} is not reachable: {exc}")
    return database


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Callable[..., PeeweeStore]]:
    """Build stores on fresh tables; every table is dropped after the test."""
    created: list[tuple[PeeweeStore, peewee.Database]] = []

    def build(dialect: str, **options: Any) -> PeeweeStore:
        database = open_database(dialect, tmp_path)
        options.setdefault("table_name", unique_table())
        store = PeeweeStore(database, **options)
        store.create_tables()
        created.append((store, database))
        return store

    yield build
    for store, database in created:
        store.drop_tables()
        database.close()


# -- the contract suite on every database ---------------------------------------------------


class TestSqliteContract(StoreContract):
    @pytest.fixture
    def store(self, make_store: Callable[..., PeeweeStore]) -> PeeweeStore:
        return make_store("sqlite")


class TestPostgresContract(StoreContract):
    @pytest.fixture
    def store(self, make_store: Callable[..., PeeweeStore]) -> PeeweeStore:
        return make_store("postgres")


class TestMariaDBContract(StoreContract):
    @pytest.fixture
    def store(self, make_store: Callable[..., PeeweeStore]) -> PeeweeStore:
        return make_store("mysql")


# -- helpers that read the tables directly ----------------------------------------------


def raw_rows(store: PeeweeStore, table: str | None = None) -> list[tuple[Any, ...]]:
    database = store.database
    quote = database.quote
    name = table or store.table_name
    return list(database.execute_sql(f"SELECT * FROM {quote[0]}{name}{quote[1]}").fetchall())


def count_statements(database: peewee.Database) -> list[str]:
    """Record every SQL statement the database runs from now on (instrumentation, not a mock)."""
    seen: list[str] = []
    original = database.execute_sql

    def counting(sql: str, params: Any = None) -> Any:
        seen.append(sql)
        return original(sql, params)

    database.execute_sql = counting  # type: ignore[method-assign]
    return seen


def bulk_insert(store: PeeweeStore, rows: list[tuple[Any, ...]], chunk: int = 1000) -> None:
    """Insert session rows with multi-row INSERTs (fast on every database)."""
    database = store.database
    q0, q1 = database.quote[0], database.quote[1]
    columns = ("session_key", "data", "user_id", "created_at", "updated_at", "expires_at", "version")
    head = f"INSERT INTO {q0}{store.table_name}{q1} ({', '.join(q0 + c + q1 for c in columns)}) VALUES "
    placeholder = "(" + ", ".join([database.param] * len(columns)) + ")"
    with database.atomic():
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            database.execute_sql(head + ", ".join([placeholder] * len(part)), [v for row in part for v in row])


# -- schema and privacy ---------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_table_never_holds_the_raw_session_id(make_store: Callable[..., PeeweeStore], dialect: str) -> None:
    store = make_store(dialect)
    manager = SessionManager(store, keys=["k"])
    session = manager.create_session(user_id="alice", data={"theme": "dark"})
    assert session.id is not None
    rows = raw_rows(store)
    assert len(rows) == 1
    values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in rows[0]]
    assert session_key(session.id) in values  # the row is keyed by the digest ...
    assert not any(session.id in value for value in values)  # ... and nowhere holds the id


@pytest.mark.parametrize("dialect", DIALECTS)
def test_text_columns_compare_exactly(make_store: Callable[..., PeeweeStore], dialect: str) -> None:
    # MySQL's default collations would merge "alice", "Alice" and "alice ".
    store = make_store(dialect)
    users = ["alice", "Alice", "alice ", "ALICE"]
    for user in users:
        store.create(make_record(store, user_id=user))
    for user in users:
        assert [r.user_id for r in store.get_all_for_user(user)] == [user]
    assert store.delete_all_for_user("alice") == 1
    assert len(store.get_all()) == 3


@pytest.mark.parametrize("dialect", DIALECTS)
def test_non_ascii_data_and_user_ids_round_trip(make_store: Callable[..., PeeweeStore], dialect: str) -> None:
    store = make_store(dialect)
    record = make_record(store, user_id="zoë 🦊", data='{"emoji":"🦊","cjk":"漢字"}')
    assert store.create(record)
    got = store.get(record.key)
    assert got is not None and got.data == record.data and got.user_id == "zoë 🦊"


@pytest.mark.parametrize("bad", ["a\x00b", "a\ud800b"], ids=["nul", "lone-surrogate"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_keys_handles_and_user_ids_no_column_can_hold_are_not_found(
    make_store: Callable[..., PeeweeStore], dialect: str, bad: str
) -> None:
    # PostgreSQL refuses a NUL in any string and no driver encodes a lone surrogate: such a
    # value names nothing stored, so it is "not found", never a driver error (a 500).
    store = make_store(dialect)
    kept = make_record(store, user_id="alice")
    assert store.create(kept)
    assert store.get(bad) is None
    assert store.delete(bad) is False
    assert store.touch(bad, time.time(), time.time() + 60) is False
    assert store.set(kept.with_changes(key=bad, version=2), 1) is SetResult.MISSING
    assert store.get_all_for_user(bad) == [] and store.get_all_for_user("u" + bad) == []
    assert store.delete_all_for_user("u" + bad) == 0
    assert store.acquire_lock(bad, "token", 5) is True
    store.release_lock(bad, "token")
    manager = SessionManager(store, keys=["k"])
    assert manager.remove_session_by_handle(bad) is False
    assert manager.remove_session_by_handle(bad, user_id="alice") is False
    assert manager.get_session(bad) is None
    with pytest.raises(InvalidUserId):
        manager.get_sessions_for_user("u" + bad)
    assert store.delete_all_for_user("alice", except_key=bad) == 1  # nothing to keep under that key
    assert store.get(kept.key) is None


@pytest.mark.parametrize("dialect", DIALECTS)
def test_unchanged_writes_still_report_success(make_store: Callable[..., PeeweeStore], dialect: str) -> None:
    # MySQL counts changed rows, not matched ones; the store must not read 0 as "gone".
    store = make_store(dialect)
    record = make_record(store)
    store.create(record)
    assert store.touch(record.key, record.updated_at, record.expires_at) is True
    assert store.set(record, record.version) is SetResult.SAVED
    assert store.acquire_lock(record.key, "me", 30) is True
    assert store.acquire_lock(record.key, "me", 30) is True  # the holder may refresh its lock


@pytest.mark.parametrize("dialect", DIALECTS)
def test_create_tables_twice_is_safe(make_store: Callable[..., PeeweeStore], dialect: str) -> None:
    store = make_store(dialect)
    store.create(make_record(store))
    store.create_tables()
    assert len(store.get_all()) == 1


@pytest.mark.parametrize("dialect", DIALECTS)
def test_two_stores_in_one_database_keep_their_indexes(
    make_store: Callable[..., PeeweeStore], dialect: str
) -> None:
    # PostgreSQL index names are per schema: with names taken from a fixed
    # model name, the second CREATE INDEX IF NOT EXISTS would silently skip.
    for store in (make_store(dialect), make_store(dialect)):
        index_names = {index.name for index in store.database.get_indexes(store.table_name)}
        assert any("expires_at" in name for name in index_names), index_names
        assert any("user_id" in name for name in index_names), index_names


# -- purge in batches -----------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_purge_removes_every_expired_row_in_batches(make_store: Callable[..., PeeweeStore], dialect: str) -> None:
    store = make_store(dialect, purge_batch_size=5000)
    now = time.time()
    expired = [
        (session_key(f"expired-{i}"), "{}", "i:1" if i % 2 else None, now - 100, now - 100, now - 50 - i % 7, 1)
        for i in range(12_000)
    ]
    live = [(session_key(f"live-{i}"), "{}", "i:1", now, now, now + 3600, 1) for i in range(25)]
    bulk_insert(store, expired + live)
    statements = count_statements(store.database)
    assert store.purge_expired(now) == 12_000
    deletes = [sql for sql in statements if "expires_at" in sql and store.table_name + "_locks" not in sql]
    assert len(deletes) == 3  # 5,000 + 5,000 + 2,000: no single statement took them all
    assert sorted(r.key for r in store.get_all()) == sorted(row[0] for row in live)
    assert len(store.get_all_for_user(1)) == 25


@pytest.mark.parametrize("dialect", DIALECTS)
def test_purge_clears_abandoned_locks(make_store: Callable[..., PeeweeStore], dialect: str) -> None:
    store = make_store(dialect)
    assert store.acquire_lock("abandoned", "crashed", 0.01)
    assert store.acquire_lock("held", "alive", 60)

    def holders_after_a_purge() -> list[str]:
        store.purge_expired(time.time())
        return sorted(row[1].decode() if isinstance(row[1], bytes) else row[1]
                      for row in raw_rows(store, store.lock_table_name))

    # The abandoned lock's 10 ms run out; until then a purge must leave both.
    wait_until(lambda: holders_after_a_purge() == ["alive"], timeout=5, what="only the live lock is left")


# -- user model, foreign key and the one-query join -----------------------------------------


def user_model_for(database: peewee.Database) -> type[peewee.Model]:
    class User(peewee.Model):
        email = peewee.CharField()
        name = peewee.CharField()
        password_hash = peewee.CharField()

        class Meta:
            table_name = unique_table("users")

    User._meta.set_database(database)
    return User


@pytest.fixture
def user_store(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[PeeweeStore, type[peewee.Model]]]:
    database = open_database(request.param, tmp_path)
    User = user_model_for(database)
    database.create_tables([User])
    store = PeeweeStore(database, table_name=unique_table(), user_model=User, user_fields=["email", "name"])
    store.create_tables()
    try:
        yield store, User
    finally:
        store.drop_tables()
        database.drop_tables([User])
        database.close()


@pytest.mark.parametrize("user_store", DIALECTS, indirect=True)
def test_user_fields_load_with_the_session_in_one_query(
    user_store: tuple[PeeweeStore, type[peewee.Model]]
) -> None:
    store, User = user_store
    ada = User.create(email="ada@example.com", name="Ada", password_hash="secret-hash")
    manager = SessionManager(store, keys=["k"])
    session = manager.create_session(user_id=ada.id, data={"theme": "dark"})
    cookie = manager.set_session_cookie(session).split(";", 1)[0]

    statements = count_statements(store.database)
    loaded = manager.initialize_session({"Cookie": cookie})
    assert len(statements) == 1, statements
    assert "JOIN" in statements[0]
    assert not loaded.is_new and loaded.user_id == ada.id
    assert loaded.user == {"email": "ada@example.com", "name": "Ada"}


@pytest.mark.parametrize("user_store", DIALECTS, indirect=True)
def test_anonymous_sessions_have_no_user(user_store: tuple[PeeweeStore, type[peewee.Model]]) -> None:
    store, _ = user_store
    record = make_record(store, user_id=None)
    assert store.create(record)
    got = store.get(record.key)
    assert got is not None and got.user_id is None and got.user is None


@pytest.mark.parametrize("user_store", DIALECTS, indirect=True)
def test_listing_a_users_sessions_carries_the_user(user_store: tuple[PeeweeStore, type[peewee.Model]]) -> None:
    store, User = user_store
    bob = User.create(email="bob@example.com", name="Bob", password_hash="x")
    manager = SessionManager(store)
    manager.create_session(user_id=bob.id, data={"n": 1})
    manager.create_session(user_id=bob.id, data={"n": 2})
    listed = manager.get_sessions_for_user(bob.id)
    assert [s.user for s in listed] == [{"email": "bob@example.com", "name": "Bob"}] * 2


@pytest.mark.parametrize("user_store", DIALECTS, indirect=True)
def test_deleting_a_user_signs_them_out(user_store: tuple[PeeweeStore, type[peewee.Model]]) -> None:
    store, User = user_store
    carol = User.create(email="carol@example.com", name="Carol", password_hash="x")
    dave = User.create(email="dave@example.com", name="Dave", password_hash="x")
    store.create(make_record(store, user_id=carol.id))
    kept = make_record(store, user_id=dave.id)
    store.create(kept)
    assert not User._meta.backrefs  # the store leaves the application's model as it was
    carol.delete_instance(recursive=True)
    assert store.get_all_for_user(carol.id) == []
    assert [r.key for r in store.get_all()] == [kept.key]


@pytest.mark.parametrize("user_store", DIALECTS, indirect=True)
def test_a_session_for_an_unknown_user_is_refused(user_store: tuple[PeeweeStore, type[peewee.Model]]) -> None:
    store, _ = user_store
    with pytest.raises(peewee.IntegrityError):
        store.create(make_record(store, user_id=999_999))
    assert store.get_all() == []


# -- configuration, URLs, proxies -------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"table_name": "bad name"}, "table_name"),
        ({"table_name": "x" * 41}, "table_name"),
        ({"table_name": 'q"uote'}, "table_name"),
        ({"user_fields": ["email"]}, "user_fields"),
        ({"purge_batch_size": 0}, "purge_batch_size"),
        ({"purge_batch_size": True}, "purge_batch_size"),
        ({"locked_retry_timeout": -1}, "locked_retry_timeout"),
        ({"user_model": dict}, "user_model"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_bad_options_name_the_option(tmp_path: Path, options: dict[str, Any], option: str) -> None:
    with pytest.raises(ConfigurationError, match=option):
        PeeweeStore(peewee.SqliteDatabase(str(tmp_path / "x.db")), **options)


def test_unknown_user_fields_are_named(tmp_path: Path) -> None:
    database = peewee.SqliteDatabase(str(tmp_path / "x.db"))
    User = user_model_for(database)
    with pytest.raises(ConfigurationError, match="'phone'"):
        PeeweeStore(database, user_model=User, user_fields=["email", "phone"])


def test_a_database_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="database"):
        PeeweeStore(str(tmp_path / "x.db"))  # type: ignore[arg-type]


def test_constructor_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "untouched.db"
    database = peewee.SqliteDatabase(str(path))
    PeeweeStore(database)
    assert database.is_closed() and not path.exists()


def test_from_url_sqlite_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    store = PeeweeStore.from_url(f"sqlite:///{tmp_path / 'url.db'}", table_name=unique_table())
    store.create_tables()
    database = store.database
    assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert database.execute_sql("PRAGMA busy_timeout").fetchone()[0] == 2000  # the default store_timeout (2 s)
    record = make_record(store)
    assert store.create(record) and store.get(record.key) is not None
    store.close()
    assert database.is_closed()


def test_from_url_refuses_in_memory_sqlite() -> None:
    with pytest.raises(ConfigurationError, match="in-memory"):
        PeeweeStore.from_url("sqlite:///:memory:")


@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
def test_from_url_server_databases(tmp_path: Path, dialect: str) -> None:
    open_database(dialect, tmp_path).close()  # skips when the server is down
    store = PeeweeStore.from_url(POSTGRES_URL if dialect == "postgres" else MYSQL_URL, table_name=unique_table())
    store.create_tables()
    try:
        record = make_record(store, user_id=3)
        assert store.create(record)
        assert store.get(record.key) is not None
    finally:
        store.drop_tables()
        store.close()


def test_a_database_proxy_is_resolved_at_first_use(tmp_path: Path) -> None:
    proxy = peewee.DatabaseProxy()
    store = PeeweeStore(proxy, table_name=unique_table())
    with pytest.raises(ConfigurationError, match="DatabaseProxy"):
        store.get(session_key("x"))
    proxy.initialize(peewee.SqliteDatabase(str(tmp_path / "proxied.db")))
    store.create_tables()
    record = make_record(store)
    assert store.create(record) and store.get(record.key) is not None


def test_a_missing_table_is_a_setup_error_naming_the_command(tmp_path: Path) -> None:
    table = unique_table()
    store = PeeweeStore(peewee.SqliteDatabase(str(tmp_path / "empty.db")), table_name=table)
    with pytest.raises(TablesMissing, match=f"table {table} does not exist: run `flask kitsession init-db`") as caught:
        store.get(session_key("x"))
    # a setup error (ConfigurationError) that adapters answer as an unavailable store (503), not a driver error
    assert isinstance(caught.value, ConfigurationError) and isinstance(caught.value, StoreUnavailable)
    assert not isinstance(caught.value.__cause__, peewee.DatabaseError)


def test_importing_the_package_does_not_import_peewee() -> None:
    code = "import sys, kitsession_wsgi, kitsession_wsgi.stores; sys.exit('peewee' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- SQLite locking -----------------------------------------------------------------------------


@pytest.fixture
def locked_sqlite(tmp_path: Path) -> Iterator[tuple[PeeweeStore, sqlite3.Connection]]:
    """A store whose database another connection holds a write transaction on."""
    path = str(tmp_path / "locked.db")
    database = peewee.SqliteDatabase(path, pragmas={"journal_mode": "wal"}, timeout=0.02)
    store = PeeweeStore(database, table_name=unique_table(), locked_retry_timeout=0.3)
    store.create_tables()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield store, other
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()
        database.close()


def test_sqlite_lock_is_retried_then_unavailable(locked_sqlite: tuple[PeeweeStore, sqlite3.Connection]) -> None:
    store, other = locked_sqlite
    statements = count_statements(store.database)
    record = make_record(store)
    with pytest.raises(StoreUnavailable, match="locked") as raised:
        store.create(record)
    assert isinstance(raised.value.__cause__, peewee.OperationalError)
    assert len(statements) > 2  # retried, not given up at the first "database is locked"
    other.execute("ROLLBACK")
    assert store.create(record) is True  # the same store works once the lock is gone


def test_sqlite_lock_released_during_the_retries_succeeds(
    locked_sqlite: tuple[PeeweeStore, sqlite3.Connection]
) -> None:
    store, other = locked_sqlite
    store.locked_retry_timeout = 30.0
    database = store.database
    original = database.execute_sql
    attempts: list[str] = []

    def release_on_the_third_attempt(sql: str, params: Any = None) -> Any:
        attempts.append(sql)
        if len(attempts) == 3:
            other.execute("ROLLBACK")
        return original(sql, params)

    database.execute_sql = release_on_the_third_attempt  # type: ignore[method-assign]
    record = make_record(store)
    assert store.create(record) is True
    assert len(attempts) == 3
    assert store.get(record.key) is not None


# -- reconnecting (shared PostgreSQL; the full outage is in test_peewee_fault.py) -------------


def backend_pid(database: peewee.Database) -> int:
    """The server process behind the current thread's connection: what a reconnect changes."""
    return int(database.execute_sql("SELECT pg_backend_pid()").fetchone()[0])


def terminate_postgres_backend(pid: int) -> None:
    """Kill one connection from another one, and wait until the server really ended it."""
    killer = db_url.connect(POSTGRES_URL)
    try:
        killer.execute_sql("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(lambda: killer.execute_sql("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                              (pid,)).fetchone()[0] == 0,
                   timeout=10, what=f"PostgreSQL backend {pid} has exited")
    finally:
        killer.close()


def test_postgres_read_survives_a_killed_connection(make_store: Callable[..., PeeweeStore]) -> None:
    store = make_store("postgres")
    record = make_record(store)
    store.create(record)
    database = store.database
    backend = backend_pid(database)
    terminate_postgres_backend(backend)
    got = store.get(record.key)  # one transparent retry on a new connection
    assert got is not None and got.key == record.key
    assert backend_pid(database) != backend, "the read did not need a new connection: nothing was tested"


def test_postgres_write_survives_a_killed_connection(make_store: Callable[..., PeeweeStore]) -> None:
    store = make_store("postgres")
    record = make_record(store)
    store.create(record)
    database = store.database
    first = backend_pid(database)
    terminate_postgres_backend(first)
    assert store.create(make_record(store)) is True  # the first call after the kill is an insert
    second = backend_pid(database)
    assert second != first, "the insert did not need a new connection: nothing was tested"
    terminate_postgres_backend(second)
    assert store.set(record.with_changes(data='{"n":1}', version=2), 1) is SetResult.SAVED  # ... an update
    assert backend_pid(database) not in (first, second), "the update did not need a new connection"
    got = store.get(record.key)
    assert got is not None and got.data == '{"n":1}'


def lose_the_first_answer(database: peewee.Database, statement: str) -> list[str]:
    """Fault injection: run the first ``statement`` for real, then fail as if the connection dropped.

    The database really applies the write; only its answer is lost, the case
    where a blind retry would misreport a fresh insert as a duplicate.
    """
    calls: list[str] = []
    original = database.execute_sql

    def flaky(sql: str, params: Any = None) -> Any:
        calls.append(sql)
        cursor = original(sql, params)
        if sql.lstrip().upper().startswith(statement) and calls.count(sql) == 1:
            raise peewee.OperationalError("server closed the connection unexpectedly")
        return cursor

    database.execute_sql = flaky  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_create_whose_answer_was_lost_still_reports_success(
    make_store: Callable[..., PeeweeStore], dialect: str
) -> None:
    store = make_store(dialect)
    record = make_record(store, user_id=5)
    calls = lose_the_first_answer(store.database, "INSERT")
    assert store.create(record) is True
    assert sum(sql.lstrip().startswith("INSERT") for sql in calls) == 2  # it was retried
    assert store.create(record.with_changes(data='{"other":1}')) is False  # a real duplicate stays False
    got = store.get(record.key)
    assert got is not None and got.data == record.data


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_save_whose_answer_was_lost_still_reports_saved(
    make_store: Callable[..., PeeweeStore], dialect: str
) -> None:
    store = make_store(dialect)
    record = make_record(store)
    store.create(record)
    calls = lose_the_first_answer(store.database, "UPDATE")
    assert store.set(record.with_changes(data='{"n":1}', version=2), 1) is SetResult.SAVED
    assert sum(sql.lstrip().startswith("UPDATE") for sql in calls) == 2
    assert store.set(record.with_changes(data='{"n":9}', version=2), 1) is SetResult.CONFLICT
    got = store.get(record.key)
    assert got is not None and got.data == '{"n":1}' and got.version == 2


def test_a_user_model_of_another_database_is_refused(tmp_path: Path) -> None:
    User = user_model_for(peewee.SqliteDatabase(str(tmp_path / "users.db")))
    with pytest.raises(ConfigurationError, match="user_model"):
        PeeweeStore(peewee.SqliteDatabase(str(tmp_path / "sessions.db")), user_model=User)


def test_an_unsupported_database_is_refused_at_construction() -> None:
    class OtherDatabase(peewee.Database):
        pass

    with pytest.raises(ConfigurationError, match="database"):
        PeeweeStore(OtherDatabase("x"))


def test_a_reinitialised_proxy_moves_the_store_along(tmp_path: Path) -> None:
    proxy = peewee.DatabaseProxy()
    store = PeeweeStore(proxy, table_name=unique_table())
    proxy.initialize(peewee.SqliteDatabase(str(tmp_path / "first.db")))
    store.create_tables()
    first = make_record(store)
    store.create(first)
    proxy.initialize(peewee.SqliteDatabase(str(tmp_path / "second.db")))
    store.create_tables()
    assert store.get(first.key) is None
    assert store.get_all() == []


def test_a_uuid_user_key_comes_back_as_text(tmp_path: Path) -> None:
    import uuid

    database = peewee.SqliteDatabase(str(tmp_path / "uuid.db"), pragmas={"foreign_keys": 1})

    class Account(peewee.Model):
        id = peewee.UUIDField(primary_key=True, default=uuid.uuid4)
        email = peewee.CharField()

        class Meta:
            table_name = unique_table("accounts")

    Account._meta.set_database(database)
    database.create_tables([Account])
    store = PeeweeStore(database, table_name=unique_table(), user_model=Account, user_fields=["email"])
    store.create_tables()
    account = Account.create(email="eve@example.com")
    manager = SessionManager(store)
    session = manager.create_session(user_id=str(account.id), data={"n": 1})
    assert session.id is not None
    loaded = manager.get_session(session.id)
    assert loaded is not None and loaded.user_id == str(account.id)
    assert loaded.user == {"email": "eve@example.com"}
    assert manager.remove_all_sessions_for_user(str(account.id)) == 1


def test_mariadb_read_survives_a_killed_connection(make_store: Callable[..., PeeweeStore]) -> None:
    store = make_store("mysql")
    record = make_record(store)
    store.create(record)
    database = store.database
    connection_id = int(database.execute_sql("SELECT CONNECTION_ID()").fetchone()[0])
    killer = db_url.connect(MYSQL_URL)
    try:
        killer.execute_sql(f"KILL {connection_id}")
        wait_until(lambda: killer.execute_sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s",
                                              (connection_id,)).fetchone()[0] == 0,
                   timeout=10, what=f"MariaDB connection {connection_id} is gone")
    finally:
        killer.close()
    got = store.get(record.key)
    assert got is not None and got.key == record.key
    assert int(database.execute_sql("SELECT CONNECTION_ID()").fetchone()[0]) != connection_id, (
        "the read did not need a new connection: nothing was tested")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_writes_join_the_applications_transaction(make_store: Callable[..., PeeweeStore], dialect: str) -> None:
    store = make_store(dialect)
    kept, rolled_back = make_record(store), make_record(store)
    with store.database.atomic():
        assert store.create(kept)
    with pytest.raises(RuntimeError), store.database.atomic():
        assert store.create(rolled_back)
        raise RuntimeError("the request failed")
    assert store.get(kept.key) is not None
    assert store.get(rolled_back.key) is None


def test_a_pooled_postgres_database_recovers_a_killed_connection(tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    from playhouse.pool import PooledPostgresqlDatabase

    open_database("postgres", tmp_path).close()  # skips when the server is down
    parts = urlsplit(POSTGRES_URL)
    database = PooledPostgresqlDatabase(
        parts.path.lstrip("/"), host=parts.hostname, port=parts.port or 5432, user=parts.username,
        password=parts.password, max_connections=4,
    )
    store = PeeweeStore(database, table_name=unique_table())
    store.create_tables()
    try:
        record = make_record(store)
        store.create(record)
        backend = backend_pid(database)
        terminate_postgres_backend(backend)
        assert store.get(record.key) is not None
        assert store.create(make_record(store)) is True
        assert backend_pid(database) != backend, "the pool handed the dead connection out again unnoticed"
    finally:
        store.drop_tables()
        database.close_all()


def test_an_overlong_user_id_is_refused_before_writing(tmp_path: Path) -> None:
    store = PeeweeStore(peewee.SqliteDatabase(str(tmp_path / "long.db")), table_name=unique_table())
    store.create_tables()
    assert store.create(make_record(store, user_id="u" * 253))
    with pytest.raises(ValueError, match="user_id is too long"):
        store.create(make_record(store, user_id="u" * 254))
    assert len(store.get_all()) == 1


# -- a save after a read leaves unchanged indexed columns alone ------------------------------


def _assigned(update_sql: str) -> set[str]:
    """The column names an UPDATE assigns (its SET clause)."""
    clause = update_sql.split(" SET ", 1)[1].split(" WHERE ", 1)[0]
    return {part.split("=")[0].strip().strip('"`') for part in clause.split(",")}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_save_after_a_read_assigns_only_what_changed(make_store: Callable[..., PeeweeStore], dialect: str) -> None:
    store = make_store(dialect)
    record = make_record(store, user_id=7)
    store.create(record)
    seen = count_statements(store.database)
    steps = [
        (record.with_changes(data='{"n":1}', version=2), {"data", "created_at", "updated_at", "version"}),
        (record.with_changes(data='{"n":2}', version=3, expires_at=record.expires_at + 60),
         {"data", "created_at", "updated_at", "expires_at", "version"}),
        (record.with_changes(data='{"n":3}', version=4, expires_at=record.expires_at + 60, user_id=8),
         {"data", "user_id", "created_at", "updated_at", "version"}),
        (record.with_changes(data='{"n":4}', version=5, expires_at=record.expires_at + 90, user_id="eight"),
         {"data", "user_id", "created_at", "updated_at", "expires_at", "version"}),
    ]
    for new, assigned in steps:
        assert store.get(record.key) is not None
        seen.clear()
        assert store.set(new, new.version - 1) is SetResult.SAVED
        updates = [sql for sql in seen if sql.startswith("UPDATE")]
        assert len(updates) == 1 and _assigned(updates[0]) == assigned
        assert store.get(record.key) == new
    assert [r.key for r in store.get_all_for_user("eight")] == [record.key]
    assert store.get_all_for_user(7) == [] and store.get_all_for_user(8) == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_touch_between_the_read_and_the_save_is_not_lost_sight_of(
        make_store: Callable[..., PeeweeStore], dialect: str) -> None:
    store = make_store(dialect)
    record = make_record(store)
    store.create(record)
    assert store.get(record.key) == record
    # Another request touches the row: expires_at moves, the version does not.
    assert store.touch(record.key, record.updated_at + 5, record.expires_at + 5) is True
    seen = count_statements(store.database)
    new = record.with_changes(data='{"n":1}', version=2)  # this request's expiry: the one it read
    assert store.set(new, 1) is SetResult.SAVED
    updates = [sql for sql in seen if sql.startswith("UPDATE")]
    assert len(updates) == 2 and "expires_at" not in _assigned(updates[0]) and "expires_at" in _assigned(updates[1])
    assert store.get(record.key) == new  # the whole record as set, expiry included


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_read_of_an_older_version_is_not_used(make_store: Callable[..., PeeweeStore], dialect: str) -> None:
    store = make_store(dialect)
    record = make_record(store, user_id=1)
    store.create(record)
    assert store.get(record.key) is not None  # version 1 read here ...
    other = PeeweeStore(store.database, table_name=store.table_name)
    moved = record.with_changes(data='{"other":1}', version=2, user_id=2)
    assert other.set(moved, 1) is SetResult.SAVED  # ... another process saved version 2 for user 2
    assert store.set(record.with_changes(data='{"mine":1}', version=2), 1) is SetResult.CONFLICT
    assert store.get(record.key) == moved
    seen = count_statements(store.database)
    store._recent_rows[record.key] = (record.key, record.data, "i:1", record.created_at, record.updated_at,
                                      record.expires_at, 2)  # a stale row claiming version 2
    newer = moved.with_changes(data='{"mine":2}', version=3, user_id=3)
    assert store.set(newer, 2) is SetResult.SAVED
    assert "user_id" in _assigned([sql for sql in seen if sql.startswith("UPDATE")][0])
    assert [r.key for r in store.get_all_for_user(3)] == [record.key] and store.get_all_for_user(2) == []


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_recent_reads_are_bounded_and_skip_large_rows(make_store: Callable[..., PeeweeStore], dialect: str) -> None:
    store = make_store(dialect)
    records = [make_record(store) for _ in range(300)]
    for record in records:
        store.create(record)
        store.get(record.key)
    assert len(store._recent_rows) == 256
    assert records[0].key not in store._recent_rows and records[-1].key in store._recent_rows
    assert store.delete(records[-1].key) is True and records[-1].key not in store._recent_rows
    big = make_record(store, data='{"x":"' + "y" * 70_000 + '"}')
    store.create(big)
    assert store.get(big.key) == big and big.key not in store._recent_rows


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_same_version_save_elsewhere_that_changed_the_user_is_not_overwritten_blindly(
        make_store: Callable[..., PeeweeStore], dialect: str) -> None:
    # The store contract lets a caller keep the version (set(record, record.version));
    # another process may do so and change the user between this store's read and save.
    store = make_store(dialect)
    record = make_record(store, user_id="alice")
    store.create(record)
    assert store.get(record.key) == record
    other = PeeweeStore(store.database, table_name=store.table_name)
    assert other.set(record.with_changes(data='{"x":1}', user_id="bob"), 1) is SetResult.SAVED
    mine = record.with_changes(data='{"y":2}', version=2)  # this request still names alice
    assert store.set(mine, 1) is SetResult.SAVED
    assert store.get(record.key) == mine
    assert [r.key for r in store.get_all_for_user("alice")] == [record.key]
    assert store.get_all_for_user("bob") == []
