"""Stores that set themselves up: ``KITSESSION_STORE`` URLs create their tables at ``init_app``.

Real SQLite, PostgreSQL and MariaDB (issue 23's second item: a URL store answered
500 on every request with "no such table").  An explicitly built store is not
set up by its constructor: ``flask kitsession init-db`` (or ``create_tables()``)
does it, and until then a request gets a 503 and one log line naming the command.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
from flask import Flask, session

from kitsession_wsgi import TablesMissing
from kitsession_wsgi.flask import KitSession
from kitsession_wsgi.stores.peewee import PeeweeStore
from kitsession_wsgi.stores.urls import store_from_url

from servers import MYSQL_URL, POSTGRES_URL, service_missing
from store_kinds import _reachable  # noqa: PLC2701 - the same reachability rule as the store kinds

KINDS = ["sqlite", "postgresql", "mariadb"]


@pytest.fixture(params=KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL with a table name of its own (``?table=``); the tables are dropped afterwards."""
    table = f"kt_{uuid.uuid4().hex[:12]}"
    base = {"sqlite": f"sqlite:///{tmp_path / 'sessions.db'}", "postgresql": POSTGRES_URL,
            "mariadb": MYSQL_URL.replace("mysql://", "mariadb://", 1)}[request.param]
    if request.param != "sqlite" and not _reachable(base.replace("mariadb://", "mysql://", 1)):
        service_missing(f"{request.param} is not reachable at {base}")
    url = f"{base}?table={table}"
    yield url
    store = store_from_url(url)
    assert isinstance(store, PeeweeStore) and store.table_name == table
    store.drop_tables()
    store.close()


def make_app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", SESSION_COOKIE_SECURE=False, KITSESSION_SECURE=False, **config)

    @app.post("/login")
    def login() -> str:
        session["user"] = "alice"
        return "ok"

    @app.get("/me")
    def me() -> str:
        return str(session.get("user"))

    return app


def test_a_store_url_creates_its_tables_at_init_app(store_url: str) -> None:
    app = make_app(KITSESSION_STORE=store_url)
    KitSession(app)
    client = app.test_client()
    assert client.post("/login").status_code == 200  # the first request works
    assert client.get("/me").text == "alice"


def test_init_app_twice_is_fine(store_url: str) -> None:
    app = make_app(KITSESSION_STORE=store_url)
    extension = KitSession()
    extension.init_app(app)
    extension.init_app(app)  # the tables exist: CREATE ... IF NOT EXISTS, and the check passes
    client = app.test_client()
    assert client.post("/login").status_code == 200
    other = make_app(KITSESSION_STORE=store_url)
    extension.init_app(other)  # a second app (another worker) on the same tables loses nothing
    second = other.test_client()
    second.set_cookie("session", client.get_cookie("session").value)  # type: ignore[union-attr]
    assert second.get("/me").text == "alice"


@pytest.fixture
def explicit_store(store_url: str) -> Iterator[PeeweeStore]:
    store = store_from_url(store_url)  # built by the application: no tables yet
    assert isinstance(store, PeeweeStore)
    yield store
    store.close()


def test_an_explicit_store_without_tables_answers_503_and_logs_the_command_once(
        explicit_store: PeeweeStore, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    KitSession(app, store=explicit_store)  # no side effects: the tables are not created
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="kitsession_wsgi"):
        answers = [client.post("/login").status_code for _ in range(3)]
    assert answers == [503, 503, 503]  # never a 500
    lines = [r.getMessage() for r in caplog.records if "does not exist" in r.getMessage()]
    assert lines == [f"session store unavailable: table {explicit_store.table_name} does not exist: "
                     "run `flask kitsession init-db` or call store.create_tables()"]


def test_init_db_creates_the_tables_of_an_explicit_store(explicit_store: PeeweeStore) -> None:
    app = make_app()
    KitSession(app, store=explicit_store)
    with pytest.raises(TablesMissing):
        explicit_store.check_schema()
    result = app.test_cli_runner().invoke(args=["kitsession", "init-db"])
    assert result.exit_code == 0, result.output
    assert explicit_store.table_name in result.output
    explicit_store.check_schema()  # both tables, of the right shape
    again = app.test_cli_runner().invoke(args=["kitsession", "init-db"])
    assert again.exit_code == 0  # idempotent
    client = app.test_client()
    assert client.post("/login").status_code == 200 and client.get("/me").text == "alice"


def test_init_db_on_a_store_without_tables_says_so() -> None:
    app = make_app()
    KitSession(app)
    result = app.test_cli_runner().invoke(args=["kitsession", "init-db"])
    assert result.exit_code == 0 and "MemoryStore needs no tables" in result.output


def test_the_table_query_parameter_is_not_passed_to_the_driver(tmp_path: Path) -> None:
    store = store_from_url(f"sqlite:///{tmp_path / 's.db'}?table=my_sessions")
    assert isinstance(store, PeeweeStore) and store.table_name == "my_sessions"
    assert isinstance(store.database, peewee.SqliteDatabase)
    assert store.database.database == str(tmp_path / "s.db")  # the file, with no query left on it


def test_the_wsgi_middleware_answers_503_for_a_missing_table(tmp_path: Path) -> None:
    from werkzeug.test import Client

    from kitsession_wsgi import SessionManager
    from kitsession_wsgi.wsgi import SessionMiddleware

    store = PeeweeStore(peewee.SqliteDatabase(str(tmp_path / "empty.db")), table_name="kt_wsgi_missing")

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        environ["kitsession"].session.data = {"n": 1}
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    # With the default outage backoff on: a missing table is not an outage to wait out.
    client = Client(SessionMiddleware(app, SessionManager(store, secure=False)))
    assert client.get("/").status_code == 503
    store.create_tables()  # `init-db` on a running app: no restart needed
    assert client.get("/").status_code == 200
