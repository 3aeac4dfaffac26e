"""The one-import switch from Flask-Session 0.8 (issue 14), against real servers.

Flask-Session's README quick start runs first with Flask-Session itself (so the app is a real
Flask-Session app), then with only its import line changed to
``from kitsession_wsgi.flask import KitSession as Session``, on Redis, memcached (one server and
a two-node cluster), SQLAlchemy on SQLite and PostgreSQL URLs, and cachelib's SimpleCache.
Every Flask-Session key KitSession honours is checked, and each unsupported type gives its error.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from flask import Flask, session

from kitsession_wsgi import ConfigurationError, MemoryStore
from kitsession_wsgi.flask import KitSession
from kitsession_wsgi.flask_session_compat import SizedIdStore
from kitsession_wsgi.stores.memcached import MemcachedStore
from kitsession_wsgi.stores.peewee import PeeweeStore
from kitsession_wsgi.stores.redis import RedisStore

from servers import POSTGRES_URL, PrivateServer, service_missing, start_memcached
from store_kinds import store_servers  # noqa: F401 (fixture)

FLASK_SESSION_IMPORT = "from flask_session import Session"
KITSESSION_IMPORT = "from kitsession_wsgi.flask import KitSession as Session"

#: Flask-Session 0.8's README quick start; {backend} and {after_config} add the backend's client.
QUICKSTART = '''
from flask import Flask, session
{import_line}

app = Flask(__name__)
# Check Configuration section for more details
SESSION_TYPE = {session_type!r}
{backend}
app.config.from_object(__name__)
{after_config}
Session(app)

@app.route('/set/')
def set():
    session['key'] = 'value'
    return 'ok'

@app.route('/get/')
def get():
    return session.get('key', 'not set')
'''


def load_quickstart(tmp_path: Path, import_line: str, session_type: str, backend: str = "",
                    after_config: str = "") -> Flask:
    name = f"quickstart_{uuid.uuid4().hex[:10]}"
    path = tmp_path / f"{name}.py"
    path.write_text(QUICKSTART.format(import_line=import_line, session_type=session_type, backend=backend,
                                      after_config=after_config), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # app.config.from_object(__name__) imports it by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    app = module.app
    assert isinstance(app, Flask)
    return app


def run_quickstart(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/get/").text == "not set"
    assert client.get("/set/").text == "ok"
    assert client.get("/get/").text == "value"
    assert app.test_client().get("/get/").text == "not set", "another browser has its own session"


@pytest.fixture
def redis_url(store_servers: Any) -> str:
    return str(store_servers.redis_url())


@pytest.fixture
def memcached_address(store_servers: Any) -> str:
    return str(store_servers.memcached_address())


@pytest.fixture
def two_memcached() -> Iterator[list[PrivateServer]]:
    servers = [start_memcached(), start_memcached()]
    yield servers
    for server in servers:
        server.stop()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


# -- the quick start, Flask-Session then KitSession ------------------------------------------------------


def test_quickstart_on_redis(tmp_path: Path, redis_url: str) -> None:
    import redis

    prefix = unique("qs") + ":"
    backend = f"from redis import Redis\nSESSION_REDIS = Redis.from_url({redis_url!r})\nSESSION_KEY_PREFIX = {prefix!r}"
    run_quickstart(load_quickstart(tmp_path, FLASK_SESSION_IMPORT, "redis", backend))
    client = redis.Redis.from_url(redis_url)
    flask_session_keys = set(client.keys(prefix + "*"))
    assert flask_session_keys, "Flask-Session wrote its sessions"

    app = load_quickstart(tmp_path, KITSESSION_IMPORT, "redis", backend)
    store = app.extensions["kitsession"].store
    assert isinstance(store, RedisStore) and store.prefix == prefix
    run_quickstart(app)
    assert set(client.keys(prefix + "*")) - flask_session_keys, "KitSession wrote under SESSION_KEY_PREFIX"
    assert store.get_all(), "the session is in Redis"
    client.delete(*client.keys(prefix + "*"))
    client.close()


def test_quickstart_on_memcached(tmp_path: Path, memcached_address: str) -> None:
    prefix = unique("qs") + ":"
    backend = (f"from pymemcache.client.base import Client\nSESSION_MEMCACHED = Client({memcached_address!r})\n"
               f"SESSION_KEY_PREFIX = {prefix!r}")
    run_quickstart(load_quickstart(tmp_path, FLASK_SESSION_IMPORT, "memcached", backend))
    app = load_quickstart(tmp_path, KITSESSION_IMPORT, "memcached", backend)
    store = app.extensions["kitsession"].store
    assert isinstance(store, MemcachedStore)
    run_quickstart(app)
    (record,) = store.get_all()
    from pymemcache.client.base import Client

    raw = Client(memcached_address)
    assert raw.get(prefix + record.key) is not None, "the record is on the server, under SESSION_KEY_PREFIX"
    raw.close()


def test_quickstart_on_a_memcached_cluster(tmp_path: Path, two_memcached: list[PrivateServer]) -> None:
    addresses = [server.address for server in two_memcached]
    backend = f"from pymemcache.client.hash import HashClient\nSESSION_MEMCACHED = HashClient({addresses!r})"
    run_quickstart(load_quickstart(tmp_path, FLASK_SESSION_IMPORT, "memcached", backend))
    app = load_quickstart(tmp_path, KITSESSION_IMPORT, "memcached", backend)
    store = app.extensions["kitsession"].store
    assert isinstance(store, MemcachedStore)
    run_quickstart(app)
    nodes = {f"{host}:{port}" for host, port in (node.server for node in store.client.clients.values())}
    assert nodes == set(addresses), "both nodes of the cluster"


def _sqlalchemy_backend(url: str, table: str) -> tuple[str, str]:
    backend = (f"from flask_sqlalchemy import SQLAlchemy\nSQLALCHEMY_DATABASE_URI = {url!r}\n"
               f"db = SQLAlchemy()\nSESSION_SQLALCHEMY = db\nSESSION_SQLALCHEMY_TABLE = {table!r}")
    return backend, "db.init_app(app)"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_quickstart_on_sqlalchemy(tmp_path: Path, database: str) -> None:
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'sessions.db'}"
    else:
        _require_postgres(POSTGRES_URL)
        # SQLAlchemy's own URL, with its driver name (KitSession drops it for peewee)
        url = POSTGRES_URL.replace("postgresql://", "postgresql+psycopg2://", 1)
    flask_session_table, kit_table = unique("fs_"), unique("ks_")
    run_quickstart(load_quickstart(tmp_path, FLASK_SESSION_IMPORT, "sqlalchemy", *_sqlalchemy_backend(url, flask_session_table)))

    app = load_quickstart(tmp_path, KITSESSION_IMPORT, "sqlalchemy", *_sqlalchemy_backend(url, kit_table))
    store = app.extensions["kitsession"].store
    assert isinstance(store, PeeweeStore) and store.table_name == kit_table
    try:
        run_quickstart(app)
        assert len(store.get_all()) == 1, "the session is a row of SESSION_SQLALCHEMY_TABLE"
    finally:
        store.drop_tables()
        store.database.execute_sql(f'DROP TABLE IF EXISTS "{flask_session_table}"')
        store.close()


def test_a_flask_session_table_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    backend, after = _sqlalchemy_backend(url, "sessions")
    run_quickstart(load_quickstart(tmp_path, FLASK_SESSION_IMPORT, "sqlalchemy", backend, after))
    with pytest.raises(ConfigurationError, match="SESSION_SQLALCHEMY_TABLE.*Flask-Session's sessions"):
        load_quickstart(tmp_path, KITSESSION_IMPORT, "sqlalchemy", backend, after)


def test_quickstart_on_cachelib_simplecache(tmp_path: Path) -> None:
    backend = "from cachelib import SimpleCache\nSESSION_CACHELIB = SimpleCache()"
    run_quickstart(load_quickstart(tmp_path, FLASK_SESSION_IMPORT, "cachelib", backend))
    app = load_quickstart(tmp_path, KITSESSION_IMPORT, "cachelib", backend)
    assert isinstance(app.extensions["kitsession"].store, MemoryStore)
    run_quickstart(app)


def _require_postgres(url: str) -> None:
    import peewee
    from playhouse.db_url import connect

    try:
        connect(url).connect()
    except peewee.OperationalError as exc:
        service_missing(f"PostgreSQL is not reachable at {url}: {exc}")


# -- unsupported types and keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(("config", "key", "hint"), [
    pytest.param({"SESSION_TYPE": "mongodb"}, "SESSION_TYPE", "KITSESSION_STORE", id="mongodb"),
    pytest.param({"SESSION_TYPE": "dynamodb"}, "SESSION_TYPE", "KITSESSION_STORE", id="dynamodb"),
    pytest.param({"SESSION_TYPE": "null"}, "SESSION_TYPE", "KITSESSION_STORE", id="null"),
    pytest.param({"SESSION_TYPE": "couchdb"}, "SESSION_TYPE", "KITSESSION_STORE", id="unknown-type"),
    pytest.param({"SESSION_TYPE": "sqlalchemy"}, "SESSION_SQLALCHEMY", "SQLALCHEMY_DATABASE_URI",
                 id="sqlalchemy-without-db-or-uri"),
    pytest.param({"SESSION_REDIS": object()}, "SESSION_TYPE", "SESSION_REDIS", id="keys-without-type"),
    pytest.param({"SESSION_TYPE": "cachelib", "SESSION_CACHELIB": object()}, "SESSION_CACHELIB", "SimpleCache",
                 id="cachelib-other-cache"),
    pytest.param({"SESSION_TYPE": "redis", "SESSION_SQLALCHEMY_SCHEMA": "app"}, "SESSION_SQLALCHEMY_SCHEMA",
                 "search_path", id="schema"),
    pytest.param({"SESSION_TYPE": "cachelib", "SESSION_ID_LENGTH": 16}, "SESSION_ID_LENGTH", "256 bits",
                 id="short-ids"),
    pytest.param({"SESSION_TYPE": "cachelib", "SESSION_ID_LENGTH": 193}, "SESSION_ID_LENGTH", "to 192",
                 id="ids-too-long-for-a-cookie"),
    pytest.param({"SESSION_TYPE": "cachelib", "SESSION_ID_LENGTH": 256}, "SESSION_ID_LENGTH", "to 192",
                 id="ids-of-256-bytes"),
    pytest.param({"SESSION_TYPE": "cachelib", "SESSION_CLEANUP_N_REQUESTS": 0}, "SESSION_CLEANUP_N_REQUESTS",
                 "positive", id="cleanup-zero"),
])
def test_a_key_with_no_equivalent_is_a_configuration_error_naming_it(config: dict[str, Any], key: str,
                                                                      hint: str) -> None:
    from cachelib import SimpleCache

    app = Flask(__name__)
    app.config.update(config)
    if app.config.get("SESSION_TYPE") == "cachelib" and "SESSION_CACHELIB" not in config:
        app.config["SESSION_CACHELIB"] = SimpleCache()
    with pytest.raises(ConfigurationError) as raised:
        KitSession(app)
    assert raised.value.option == key
    assert hint in str(raised.value)


# -- each honoured key ------------------------------------------------------------------------------------


def simplecache_app(**config: Any) -> Flask:
    from cachelib import SimpleCache

    app = Flask(__name__)
    app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=SimpleCache(), **config)
    KitSession(app)

    @app.get("/set")
    def set_value() -> str:
        session["key"] = "value"
        return ""

    @app.get("/get")
    def get_value() -> str:
        return str(session.get("key"))

    return app


def set_cookie(app: Flask) -> dict[str, str]:
    header = app.test_client().get("/set").headers["Set-Cookie"]
    first, *rest = header.split("; ")
    name, _, value = first.partition("=")
    return {"name": name, "value": unquote(value), **{part.partition("=")[0].lower(): part.partition("=")[2]
                                                       for part in rest}}


def test_session_permanent_defaults_to_true_as_in_flask_session_and_false_is_honoured() -> None:
    assert "max-age" in set_cookie(simplecache_app())
    assert "max-age" not in set_cookie(simplecache_app(SESSION_PERMANENT=False))


def test_session_use_signer() -> None:
    assert set_cookie(simplecache_app(SECRET_KEY="k", SESSION_USE_SIGNER=True))["value"].startswith("s:")
    assert not set_cookie(simplecache_app(SECRET_KEY="k", SESSION_USE_SIGNER=False))["value"].startswith("s:")
    # Flask-Session's default (no signer) with no SECRET_KEY: unsigned, and it works.
    app = simplecache_app()
    client = app.test_client()
    assert not unquote(client.get("/set").headers["Set-Cookie"].split(";")[0].split("=", 1)[1]).startswith("s:")
    assert client.get("/get").text == "value"


def test_session_id_length() -> None:
    app = simplecache_app(SESSION_ID_LENGTH=48)
    assert isinstance(app.extensions["kitsession"].store, SizedIdStore)
    assert len(set_cookie(app)["value"]) == 64  # secrets.token_urlsafe(48)
    assert len(set_cookie(simplecache_app())["value"]) == 43  # the default 32 bytes


def test_the_longest_accepted_session_id_length_gives_sessions_that_are_read_back() -> None:
    """192 bytes is 256 characters, the longest id a cookie carries: a session is still found."""
    app = simplecache_app(SESSION_ID_LENGTH=192)
    client = app.test_client()
    assert len(unquote(client.get("/set").headers["Set-Cookie"].split(";")[0].split("=", 1)[1])) == 256
    assert client.get("/get").text == "value"


def test_session_cleanup_n_requests_purges_expired_sessions(clock: Any) -> None:
    app = simplecache_app(SESSION_CLEANUP_N_REQUESTS=1, KITSESSION_CLOCK=clock,
                          PERMANENT_SESSION_LIFETIME=60, SESSION_REFRESH_EACH_REQUEST=False)
    store = app.extensions["kitsession"].store
    app.test_client().get("/set")
    assert len(store.get_all()) == 1
    clock.advance(61)
    app.test_client().get("/get")  # a request without the cookie: only the purge can remove it
    assert store.get_all() == []


def test_session_key_prefix_on_redis(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    prefix = unique("pfx") + ":"
    app = Flask(__name__)
    app.config.update(SESSION_TYPE="redis", SESSION_REDIS=client, SESSION_KEY_PREFIX=prefix)
    KitSession(app)

    @app.get("/set")
    def set_value() -> str:
        session["key"] = "value"
        return ""

    app.test_client().get("/set")
    assert client.keys(prefix + "*")
    client.delete(*client.keys(prefix + "*"))
    client.close()


# -- configurations Flask-Session accepts that once had no equivalent ------------------------------------


def counter_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="switch", **config)
    KitSession(app)

    @app.get("/count")
    def count() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    return app


def shares_sessions(first: Flask, second: Flask) -> None:
    """A browser's session made by ``first`` is read and changed by ``second`` (another process,
    or the same app after a restart)."""
    browser = first.test_client()
    assert browser.get("/count").text == "1"
    cookie = browser.get_cookie("session")
    assert cookie is not None
    other = second.test_client()
    other.set_cookie("session", cookie.value)
    assert other.get("/count").text == "2"
    assert browser.get("/count").text == "3"


def test_session_type_filesystem_is_a_sqlite_file_shared_by_every_process_on_the_directory(tmp_path: Path) -> None:
    first = counter_app(SESSION_TYPE="filesystem", SESSION_FILE_DIR=str(tmp_path / "sessions"))
    restarted = counter_app(SESSION_TYPE="filesystem", SESSION_FILE_DIR=str(tmp_path / "sessions"))
    store = first.extensions["kitsession"].store
    assert isinstance(store, PeeweeStore)
    assert store.database is not restarted.extensions["kitsession"].store.database, "two connections, as two processes"
    shares_sessions(first, restarted)
    assert (tmp_path / "sessions").is_dir() and list((tmp_path / "sessions").glob("*.db"))


def test_cachelib_filesystemcache_is_a_sqlite_file_in_its_directory(tmp_path: Path) -> None:
    from cachelib import FileSystemCache

    first = counter_app(SESSION_TYPE="cachelib", SESSION_CACHELIB=FileSystemCache(str(tmp_path / "cache")))
    second = counter_app(SESSION_TYPE="cachelib", SESSION_CACHELIB=FileSystemCache(str(tmp_path / "cache")))
    shares_sessions(first, second)
    assert list((tmp_path / "cache").glob("*.db"))


def test_cachelib_without_a_cache_is_flask_sessions_default_directory(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shares_sessions(counter_app(SESSION_TYPE="cachelib"), counter_app(SESSION_TYPE="cachelib"))
    assert list((tmp_path / "flask_session").glob("*.db"))


def test_sqlalchemy_without_session_sqlalchemy_uses_sqlalchemy_database_uri(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'app.db'}"
    first = counter_app(SESSION_TYPE="sqlalchemy", SQLALCHEMY_DATABASE_URI=uri)
    second = counter_app(SESSION_TYPE="sqlalchemy", SQLALCHEMY_DATABASE_URI=uri)
    assert isinstance(first.extensions["kitsession"].store, PeeweeStore)
    shares_sessions(first, second)


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:///", "sqlite:///:memory:"])
@pytest.mark.parametrize("given_db", [True, False], ids=["SESSION_SQLALCHEMY", "SQLALCHEMY_DATABASE_URI"])
def test_flask_sqlalchemy_on_in_memory_sqlite_is_one_database_for_every_thread(
        uri: str, given_db: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every spelling Flask-SQLAlchemy takes for in-memory SQLite (an empty path too, as
    Flask-Session 0.8's own test writes it), with or without the ``SQLAlchemy`` instance:
    no file is created."""
    import threading

    monkeypatch.chdir(tmp_path)

    from flask_sqlalchemy import SQLAlchemy

    app = Flask(__name__)
    app.config.update(SECRET_KEY="switch", SESSION_TYPE="sqlalchemy", SQLALCHEMY_DATABASE_URI=uri)
    if given_db:
        app.config["SESSION_SQLALCHEMY"] = SQLAlchemy(app)
    KitSession(app)

    @app.get("/count")
    def count() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    browser = app.test_client()
    assert browser.get("/count").text == "1"
    cookie = browser.get_cookie("session")
    assert cookie is not None
    answers: list[str] = []

    def other_thread() -> None:
        client = app.test_client()
        client.set_cookie("session", cookie.value)
        answers.append(client.get("/count").text)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert answers == ["2"], "another thread sees the same in-memory database"
    assert list(tmp_path.iterdir()) == [], "an in-memory database is no file"


@pytest.mark.parametrize("session_type", ["redis", "memcached", "filesystem", "cachelib", "sqlalchemy"])
def test_flask_session_own_tests_flow(session_type: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """What Flask-Session 0.8's own tests (``tests/conftest.py``'s ``app_utils``) check, per type:
    no secret key, ``SESSION_PERMANENT=False``; no ``Vary`` on a request that never reads the
    session, ``Vary: Cookie`` once it does; set, modify, delete; the cookie is ``session``; the
    value is in the store the type names (read back through the manager, not by raw key)."""
    from cachelib.file import FileSystemCache

    config: dict[str, Any] = {"SESSION_TYPE": session_type}
    store_type: type = PeeweeStore
    if session_type == "redis":
        import redis

        config["SESSION_REDIS"] = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        store_type = RedisStore
    elif session_type == "memcached":
        import pymemcache

        config["SESSION_MEMCACHED"] = pymemcache.Client(request.getfixturevalue("memcached_address"))
        store_type = MemcachedStore
    elif session_type == "filesystem":
        config["SESSION_FILE_DIR"] = str(tmp_path / "sessions")
    elif session_type == "cachelib":
        config["SESSION_CACHELIB"] = FileSystemCache(threshold=500, cache_dir=str(tmp_path / "cache"))
    else:
        config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///"
    app = Flask(__name__)
    app.config.update(config, SESSION_SERIALIZATION_FORMAT="json", SESSION_PERMANENT=False)

    @app.get("/")
    def hello() -> str:
        return "hello world"

    @app.post("/set")
    def set_value() -> str:
        from flask import request as flask_request

        session["value"] = flask_request.form["value"]
        return "value set"

    @app.post("/delete")
    def delete_value() -> str:
        del session["value"]
        return "value deleted"

    @app.get("/get")
    def get_value() -> str:
        return str(session.get("value", "no value set"))

    KitSession(app)
    client = app.test_client()
    assert client.get("/get").text == "no value set"
    assert "Vary" not in client.get("/").headers
    assert client.post("/set", data={"value": "42"}).text == "value set"
    assert client.get("/get").text == "42"
    assert client.get("/get").headers["Vary"] == "Cookie"
    assert client.post("/set", data={"value": "43"}).text == "value set"
    assert client.get("/get").text == "43"
    assert client.post("/delete").text == "value deleted"
    assert client.get("/get").text == "no value set"

    set_cookie = [h for h in client.post("/set", data={"value": "44"}).headers.getlist("Set-Cookie")
                  if h.startswith("session=")]
    assert set_cookie, "the cookie is named session, as Flask-Session's"
    with app.test_request_context():
        from kitsession_wsgi.flask import get_manager

        manager = get_manager()
        assert isinstance(manager.store, store_type)
        stored = manager.initialize_session({"Cookie": set_cookie[0].split(";")[0]})
    assert not stored.is_new and stored.data.get("value") == "44"
