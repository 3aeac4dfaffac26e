"""PeeweeStore refuses a table of another shape with a SchemaMismatch, on SQLite, PostgreSQL and MariaDB.

Issue 13 item 8: a table created without ``user_model`` and used with it wrote, then
failed on read with a raw ``ProgrammingError: operator does not exist: integer =
character varying``.  Now the first call (or ``create_tables()`` / ``check_schema()``)
compares the columns with what the store needs and names table, column, expected and
found.  The migration SQL of docs/stores/sql.md is run here too, per database, so it cannot rot.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest
from playhouse import db_url

from kitsession_wsgi import ConfigurationError, SchemaMismatch, SessionManager, TablesMissing, session_key
from kitsession_wsgi.stores.peewee import PeeweeStore
from kitsession_wsgi.testing import make_record

from servers import MYSQL_URL, POSTGRES_URL, service_missing

DIALECTS = ["sqlite", "postgres", "mysql"]
SQL_PAGE = Path(__file__).resolve().parents[1] / "docs" / "stores" / "sql.md"


def unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


@pytest.fixture
def open_db(tmp_path: Path) -> Iterator[Callable[[str], peewee.Database]]:
    """A connected database of a dialect; every table made through ``tables`` is dropped afterwards."""
    opened: list[peewee.Database] = []

    def open_one(dialect: str) -> peewee.Database:
        if dialect == "sqlite":
            database: peewee.Database = peewee.SqliteDatabase(str(tmp_path / "schema.db"),
                                                              pragmas={"foreign_keys": 1})
        else:
            url = POSTGRES_URL if dialect == "postgres" else MYSQL_URL
            database = db_url.connect(url)
            try:
                database.connect()
            except (peewee.OperationalError, peewee.InterfaceError) as exc:
                service_missing(f"{dialect} at {url} is not reachable: {exc}")
        opened.append(database)
        return database

    yield open_one
    for database in opened:
        for table in getattr(database, "_test_tables", [])[::-1]:
            database.execute_sql(f"DROP TABLE IF EXISTS {quoted(database, table)}")
        database.close()


def quoted(database: peewee.Database, name: str) -> str:
    return f"{database.quote[0]}{name}{database.quote[1]}"


def remember(database: peewee.Database, *tables: str) -> None:
    """Drop these tables at the end of the test (children after parents: listed parent first)."""
    if not hasattr(database, "_test_tables"):
        database._test_tables = []  # type: ignore[attr-defined]
    database._test_tables.extend(tables)  # type: ignore[attr-defined]


def user_model(database: peewee.Database, table: str) -> type[peewee.Model]:
    class User(peewee.Model):
        email = peewee.CharField()

        class Meta:
            table_name = table

    User._meta.set_database(database)
    return User


def store_on(database: peewee.Database, table: str, **options: Any) -> PeeweeStore:
    remember(database, table, f"{table}_locks")
    return PeeweeStore(database, table_name=table, **options)


def run_sql(database: peewee.Database, script: str) -> None:
    """Run a ;-separated script statement by statement (drivers take one at a time)."""
    for statement in script.split(";"):
        lines = [line for line in statement.splitlines() if line.strip() and not line.strip().startswith("--")]
        if lines:
            sql = "\n".join(lines)
            # psycopg2 and pymysql read % as a parameter marker; psql and mysql (where users run it) do not
            database.execute_sql(sql if isinstance(database, peewee.SqliteDatabase) else sql.replace("%", "%%"))


# -- user_model added to (or dropped from) an existing store ----------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_user_model_added_to_an_existing_table_is_refused_naming_the_column(
    open_db: Callable[[str], peewee.Database], dialect: str
) -> None:
    database = open_db(dialect)
    users, table = unique("users"), unique("kss")
    User = user_model(database, users)
    database.create_tables([User])
    remember(database, users)
    plain = store_on(database, table)
    plain.create_tables()
    ada = User.create(email="ada@example.com")
    session = SessionManager(plain, keys=["k"]).create_session(user_id=ada.id, data={"n": 1})
    cookie = {"Cookie": SessionManager(plain, keys=["k"]).set_session_cookie(session).split(";", 1)[0]}

    with_users = store_on(database, table, user_model=User, user_fields=["email"])
    manager = SessionManager(with_users, keys=["k"])
    for call in (lambda: manager.initialize_session(cookie), with_users.check_schema, with_users.create_tables):
        with pytest.raises(SchemaMismatch) as info:
            call()
        error = info.value
        assert isinstance(error, ConfigurationError) and error.option == "user_model"
        assert (error.table, error.column) == (table, "user_id")
        assert f"{users}.id" in error.expected and "integer" in error.expected.lower()
        assert error.found.lower().startswith({"sqlite": "varchar", "postgres": "character varying",
                                               "mysql": "varbinary"}[dialect])
        assert table in str(error) and "user_id" in str(error) and "Migrating the PeeweeStore table" in str(error)
    # The store it was made for still works: nothing was changed by the check.
    assert SessionManager(plain, keys=["k"]).initialize_session(cookie).user_id == ada.id


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_table_made_with_user_model_used_without_it_is_refused(
    open_db: Callable[[str], peewee.Database], dialect: str
) -> None:
    database = open_db(dialect)
    users, table = unique("users"), unique("kss")
    User = user_model(database, users)
    database.create_tables([User])
    remember(database, users)
    store_on(database, table, user_model=User).create_tables()
    plain = store_on(database, table)
    with pytest.raises(SchemaMismatch) as info:
        plain.get(session_key("any"))
    assert (info.value.table, info.value.column) == (table, "user_id")
    assert info.value.option == "table_name" and "int" in info.value.found.lower()
    assert ("VARBINARY" if dialect == "mysql" else "text type") in info.value.expected


# -- tables made by hand, of other shapes -------------------------------------------------------------

TIME = {"sqlite": "REAL", "postgres": "DOUBLE PRECISION", "mysql": "DOUBLE"}
KEY = {"sqlite": "VARCHAR(64)", "postgres": "VARCHAR(64)", "mysql": "VARBINARY(64)"}
USER = {"sqlite": "VARCHAR(255)", "postgres": "VARCHAR(255)", "mysql": "VARBINARY(255)"}
DATA = {"sqlite": "TEXT", "postgres": "TEXT", "mysql": "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"}


def create_table(database: peewee.Database, dialect: str, table: str, **replace: str | None) -> None:
    """The store's sessions table by hand, with columns replaced (a type) or left out (``None``)."""
    columns = {
        "session_key": f"{KEY[dialect]} NOT NULL PRIMARY KEY",
        "data": f"{DATA[dialect]} NOT NULL",
        "user_id": f"{USER[dialect]} NULL",
        "created_at": f"{TIME[dialect]} NOT NULL",
        "updated_at": f"{TIME[dialect]} NOT NULL",
        "expires_at": f"{TIME[dialect]} NOT NULL",
        "version": "BIGINT NOT NULL",
    }
    for name, definition in replace.items():
        if definition is None:
            del columns[name]
        else:
            columns[name] = definition
    body = ", ".join(f"{quoted(database, name)} {definition}" for name, definition in columns.items())
    database.execute_sql(f"CREATE TABLE {quoted(database, table)} ({body})")


WRONG_SHAPES = [
    pytest.param({"version": None}, "version", "no such column", id="old-table-without-version"),
    pytest.param({"expires_at": None}, "expires_at", "no such column", id="no-expires-at"),
    pytest.param({"created_at": "INTEGER NOT NULL"}, "created_at", "int", id="times-as-integers"),
    pytest.param({"version": "VARCHAR(20) NOT NULL"}, "version", "char", id="version-as-text"),
    pytest.param({"user_id": "INTEGER NULL"}, "user_id", "int", id="user-id-as-integer"),
    pytest.param({"user_id": "{user} NOT NULL"}, "user_id", "NOT NULL", id="user-id-not-null"),
    pytest.param({"session_key": "{key} NOT NULL"}, "session_key", "not the primary key", id="key-not-primary"),
]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("replace", "column", "found"), WRONG_SHAPES)
def test_a_hand_made_table_of_another_shape_is_refused_on_first_use(
    open_db: Callable[[str], peewee.Database], dialect: str, replace: dict[str, str | None], column: str, found: str
) -> None:
    database = open_db(dialect)
    table = unique("kss")
    remember(database, table)
    create_table(database, dialect, table, **{
        name: None if value is None else value.format(user=USER[dialect], key=KEY[dialect])
        for name, value in replace.items()
    })
    store = PeeweeStore(database, table_name=table)
    with pytest.raises(SchemaMismatch) as info:
        store.create(make_record(store, user_id=5))
    assert (info.value.table, info.value.column) == (table, column)
    assert found.lower() in info.value.found.lower()
    # Nothing was written: the check comes before the first statement.
    rows = database.execute_sql(f"SELECT COUNT(*) FROM {quoted(database, table)}").fetchone()[0]
    assert rows == 0


@pytest.mark.parametrize(
    ("replace", "column", "expected"),
    [
        pytest.param({"user_id": "VARCHAR(255) NULL"}, "user_id", "VARBINARY", id="user-id-case-insensitive"),
        pytest.param({"session_key": "VARCHAR(64) NOT NULL PRIMARY KEY"}, "session_key", "VARBINARY", id="key-varchar"),
        pytest.param({"data": "TEXT NOT NULL"}, "data", "LONGTEXT", id="data-64-kib"),
    ],
)
def test_mariadb_columns_that_would_compare_loosely_or_truncate_are_refused(
    open_db: Callable[[str], peewee.Database], replace: dict[str, str], column: str, expected: str
) -> None:
    database = open_db("mysql")
    table = unique("kss")
    remember(database, table)
    create_table(database, "mysql", table, **replace)  # type: ignore[arg-type]
    with pytest.raises(SchemaMismatch) as info:
        PeeweeStore(database, table_name=table).check_schema()
    assert info.value.column == column and expected in info.value.expected


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_hand_made_table_of_the_right_shape_is_accepted(
    open_db: Callable[[str], peewee.Database], dialect: str
) -> None:
    database = open_db(dialect)
    table = unique("kss")
    remember(database, table)
    create_table(database, dialect, table)
    store = PeeweeStore(database, table_name=table)
    record = make_record(store, user_id="alice")
    assert store.create(record) and store.get(record.key) is not None
    # No locks table: the sessions work; check_schema() says what is missing.
    with pytest.raises(ConfigurationError, match=f"{table}_locks.*create_tables"):
        store.check_schema()


def test_sqlite_columns_declared_without_a_type_are_accepted(open_db: Callable[[str], peewee.Database]) -> None:
    database = open_db("sqlite")
    table = unique("kss")
    remember(database, table)
    database.execute_sql(f'CREATE TABLE "{table}" (session_key PRIMARY KEY, data, user_id, created_at, '
                         "updated_at, expires_at, version)")
    store = PeeweeStore(database, table_name=table)
    record = make_record(store, user_id=3)
    assert store.create(record) and store.get(record.key) == record


# -- when the check runs, and what it costs --------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_check_runs_once_then_costs_nothing_per_call(
    open_db: Callable[[str], peewee.Database], dialect: str
) -> None:
    database = open_db(dialect)
    table = unique("kss")
    store_on(database, table).create_tables()
    store = PeeweeStore(database, table_name=table)  # a fresh store: checks on its first call
    looked_up: list[str] = []
    original = database.get_columns

    def counting(table_name: str, schema: str | None = None) -> Any:
        looked_up.append(table_name)
        return original(table_name, schema)

    database.get_columns = counting  # type: ignore[method-assign]
    try:
        record = make_record(store)
        assert store.create(record)
        first = len(looked_up)
        assert first >= 1
        for _ in range(50):
            assert store.get(record.key) is not None
        assert store.touch(record.key, record.updated_at + 1, record.expires_at + 1)
        assert len(looked_up) == first
    finally:
        del database.get_columns


def test_a_missing_table_is_checked_again_until_it_exists(open_db: Callable[[str], peewee.Database]) -> None:
    database = open_db("sqlite")
    table = unique("kss")
    store = store_on(database, table)
    with pytest.raises(TablesMissing, match=f"table {table} does not exist: run `flask kitsession init-db`"):
        store.get(session_key("x"))  # the error names the fix, not the driver's "no such table"
    with pytest.raises(ConfigurationError, match=f"{table}.*does not exist.*create_tables"):
        store.check_schema()
    # Created by someone else (a migration tool) after the first call: found and checked.
    create_table(database, "sqlite", table, created_at="INTEGER NOT NULL")
    with pytest.raises(SchemaMismatch, match="created_at"):
        store.get(session_key("x"))


def test_constructing_a_store_still_touches_nothing(tmp_path: Path) -> None:
    database = peewee.SqliteDatabase(str(tmp_path / "untouched.db"))
    PeeweeStore(database, table_name=unique("kss"))
    assert database.is_closed() and not (tmp_path / "untouched.db").exists()


# -- the migration recipes of docs/stores/sql.md, run on every database ------------------------------------------------

RECIPE = re.compile(r"^```sql\n-- (?P<title>[^\n]+)\n(?P<body>.*?)^```", re.M | re.S)
RECIPE_DIALECT = {"SQLite": "sqlite", "PostgreSQL": "postgres", "MariaDB": "mysql"}


def readme_recipes(kind: str) -> dict[str, str]:
    """The SQL blocks of docs/stores/sql.md whose first line is ``-- <Database>: <kind>``, by dialect."""
    found: dict[str, str] = {}
    for match in RECIPE.finditer(SQL_PAGE.read_text(encoding="utf-8")):
        database, _, title = match["title"].partition(": ")
        if title.startswith(kind) and database.split("/")[0] in RECIPE_DIALECT:
            found[RECIPE_DIALECT[database.split("/")[0]]] = match["body"]
    return found


def test_the_readme_has_both_recipes_for_every_database() -> None:
    assert set(readme_recipes("user_model added")) == set(DIALECTS)
    assert set(readme_recipes("a missing column")) == set(DIALECTS)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_readme_recipe_for_adding_user_model_works(
    open_db: Callable[[str], peewee.Database], dialect: str
) -> None:
    database = open_db(dialect)
    users, table = unique("users"), unique("kss")
    User = user_model(database, users)
    database.create_tables([User])
    remember(database, users)
    plain = store_on(database, table)
    plain.create_tables()
    ada, bob = User.create(email="ada@example.com"), User.create(email="bob@example.com")
    before = SessionManager(plain, keys=["k"])
    kept = before.create_session(user_id=ada.id, data={"who": "ada"})
    anonymous = before.create_session(data={"who": "nobody"})
    by_name = before.create_session(user_id="carol", data={"who": "carol"})  # not a key of users
    gone_user = before.create_session(user_id=bob.id + 1000, data={"who": "deleted user"})
    cookies = {s.data["who"]: {"Cookie": before.set_session_cookie(s).split(";", 1)[0]}
               for s in (kept, anonymous, by_name, gone_user)}

    run_sql(database, readme_recipes("user_model added")[dialect]
            .replace("kitsession_sessions", table).replace("users", users))

    after_store = store_on(database, table, user_model=User, user_fields=["email"])
    after_store.check_schema()
    after = SessionManager(after_store, keys=["k"])
    loaded = after.initialize_session(cookies["ada"])
    assert not loaded.is_new and loaded.user_id == ada.id and loaded.user == {"email": "ada@example.com"}
    assert not after.initialize_session(cookies["nobody"]).is_new
    assert after.initialize_session(cookies["carol"]).is_new  # signed out: no such user key
    assert after.initialize_session(cookies["deleted user"]).is_new
    # The foreign key works: deleting the user signs them out.
    ada.delete_instance()
    assert after.initialize_session(cookies["ada"]).is_new


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_readme_recipe_for_a_missing_column_works(
    open_db: Callable[[str], peewee.Database], dialect: str
) -> None:
    database = open_db(dialect)
    table = unique("kss")
    remember(database, table, f"{table}_locks")
    create_table(database, dialect, table, version=None)
    with pytest.raises(SchemaMismatch, match="version"):
        PeeweeStore(database, table_name=table).check_schema()
    run_sql(database, readme_recipes("a missing column")[dialect].replace("kitsession_sessions", table))
    store = PeeweeStore(database, table_name=table)
    store.create_tables()  # adds only the missing locks table, then checks both
    manager = SessionManager(store, keys=["k"])
    session = manager.create_session(user_id=1, data={"n": 1})
    assert manager.get_session(session.id) is not None  # type: ignore[arg-type]
