"""The one-import switch from Flask-Session 0.8: its ``SESSION_*`` keys, read by ``init_app``.

An app configured for Flask-Session runs unchanged with::

    from kitsession_wsgi.flask import KitSession as Session

``SESSION_TYPE`` picks the store: ``redis`` -> :class:`~kitsession_wsgi.stores.redis.RedisStore`
on ``SESSION_REDIS``; ``memcached`` ->
:class:`~kitsession_wsgi.stores.memcached.MemcachedStore` on the servers of
``SESSION_MEMCACHED`` (one pymemcache client or a ``HashClient`` cluster); ``sqlalchemy`` ->
:class:`~kitsession_wsgi.stores.peewee.PeeweeStore` on the database URL of
``SESSION_SQLALCHEMY``'s engine, table ``SESSION_SQLALCHEMY_TABLE`` (created, as Flask-Session
creates its own); ``cachelib`` with a ``SimpleCache`` -> :class:`~kitsession_wsgi.MemoryStore`; ``filesystem``
(``SESSION_FILE_DIR``) and ``cachelib`` with a ``FileSystemCache`` (Flask-Session's default) -> a
:class:`~kitsession_wsgi.stores.peewee.PeeweeStore` on a SQLite file in that directory, shared by
every process on it and kept across restarts.  ``sqlalchemy`` without ``SESSION_SQLALCHEMY`` uses
``SQLALCHEMY_DATABASE_URI``, as Flask-Session's own ``SQLAlchemy(app)`` would; an in-memory SQLite
database is one connection shared by every thread, as Flask-SQLAlchemy's engine shares it.
``SESSION_KEY_PREFIX`` prefixes the Redis and memcached keys, ``SESSION_ID_LENGTH`` (32 or more)
sizes the ids, ``SESSION_CLEANUP_N_REQUESTS`` purges expired sessions after about one request
in N; ``SESSION_PERMANENT`` and ``SESSION_USE_SIGNER`` are read per request (see
:mod:`kitsession_wsgi.flask.settings`).  ``KITSESSION_MIGRATE_FLASK_SESSION = True`` (Redis only)
moves signed-in users' Flask-Session sessions over, once each (:class:`FlaskSessionMigration`);
KitSession's own keys then start ``SESSION_KEY_PREFIX`` + ``"kitsession:"``, apart from Flask-Session's.  A type or key with no equivalent is a
:class:`~kitsession_wsgi.ConfigurationError` naming it and what to use instead.

.. versionadded:: 0.2
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import secrets
import typing as t
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigurationError, StoreUnavailable
from ..signing import MAX_ID_LENGTH
from ..stores.base import SessionStore
from ..stores.memory import MemoryStore

__all__ = [
    "DEFAULT_ID_LENGTH",
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_TABLE",
    "MIGRATION_NAMESPACE",
    "UNSUPPORTED_TYPES",
    "FILE_STORE_NAME",
    "FLASK_SESSION_KEYS",
    "FlaskSessionMigration",
    "FlaskSessionSetup",
    "SizedIdStore",
    "database_url",
    "flask_session_setup",
    "memcached_servers",
    "refuse_keys_without_type",
    "uses_flask_session",
]

#: Flask-Session's defaults (``flask_session.defaults.Defaults``, 0.8)
DEFAULT_KEY_PREFIX = "session:"
DEFAULT_ID_LENGTH = 32
#: ``secrets.token_urlsafe(192)`` is 256 characters; one more byte makes ids no cookie may carry.
MAX_ID_BYTES = MAX_ID_LENGTH * 3 // 4
DEFAULT_TABLE = "sessions"
#: Appended to ``SESSION_KEY_PREFIX`` for KitSession's own Redis keys while migrating
#: (``KITSESSION_MIGRATE_FLASK_SESSION``): Flask-Session's ids hold no ":", so no cookie
#: value can name a KitSession record or marker.
MIGRATION_NAMESPACE = "kitsession:"

_INSTEAD = ("use SESSION_TYPE 'redis', 'memcached', 'sqlalchemy' or 'cachelib' with a SimpleCache, "
            "or a KITSESSION_STORE URL")
UNSUPPORTED_TYPES = {
    "mongodb": f"KitSession has no MongoDB store: {_INSTEAD}",
    "dynamodb": f"KitSession has no DynamoDB store: {_INSTEAD}",
    "null": f"Flask-Session's 'null' type is no store: {_INSTEAD}",
}
#: Flask-Session's keys that configure it (not Flask's ``SESSION_COOKIE_*``, nor
#: ``SESSION_PERMANENT``, which KitSession reads on its own): without ``SESSION_TYPE`` they are
#: refused, as Flask-Session 0.8 refuses a missing type.
FLASK_SESSION_KEYS = (
    "SESSION_REDIS", "SESSION_MEMCACHED", "SESSION_FILE_DIR", "SESSION_FILE_THRESHOLD", "SESSION_FILE_MODE",
    "SESSION_CACHELIB", "SESSION_SQLALCHEMY", "SESSION_SQLALCHEMY_TABLE", "SESSION_SQLALCHEMY_SEQUENCE",
    "SESSION_SQLALCHEMY_SCHEMA", "SESSION_SQLALCHEMY_BIND_KEY", "SESSION_MONGODB", "SESSION_MONGODB_DB",
    "SESSION_MONGODB_COLLECT", "SESSION_DYNAMODB", "SESSION_DYNAMODB_TABLE", "SESSION_KEY_PREFIX",
    "SESSION_ID_LENGTH", "SESSION_SERIALIZATION_FORMAT", "SESSION_CLEANUP_N_REQUESTS", "SESSION_USE_SIGNER",
)
#: The SQLite file KitSession keeps in ``SESSION_FILE_DIR`` / a ``FileSystemCache``'s directory
FILE_STORE_NAME = "kitsession-sessions.db"
#: Flask-Session's columns: a table holding them is Flask-Session's, not a place for KitSession's rows
_FLASK_SESSION_COLUMNS = {"session_id", "expiry"}


@dataclass(frozen=True)
class FlaskSessionSetup:
    """What Flask-Session's keys mean for ``init_app``: the store, how often to purge, and the
    migration of Flask-Session's own sessions when ``KITSESSION_MIGRATE_FLASK_SESSION`` is on."""

    store: SessionStore
    cleanup_every: int | None
    migration: FlaskSessionMigration | None = None


#: What ``secrets.token_urlsafe`` makes: a cookie of another shape is never looked up.
_FLASK_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,400}")
#: At most this many values of the cookie's name are tried, as the manager's own cap.
_MAX_CANDIDATES = 4


class FlaskSessionMigration:
    """Moves a signed-in user's Flask-Session session (Redis) into KitSession, once.

    For a session cookie KitSession cannot verify as its own, the value is read as
    Flask-Session's id (unsigned, or signed by Flask-Session's ``itsdangerous`` signer when
    ``SESSION_USE_SIGNER`` is on), its record is taken from Redis with ``GETDEL`` (so only one
    request moves it) under Flask-Session's key (``SESSION_KEY_PREFIX`` + id), decoded from
    msgpack or JSON (never pickle, Flask-Session's last fallback) and becomes a new KitSession
    session whose cookie replaces the old one on the response.

    .. versionadded:: 0.2
    """

    def __init__(self, client: t.Any, prefix: str, use_signer: bool) -> None:
        self.client = client
        self.prefix = prefix
        self.use_signer = use_signer

    def take(self, values: list[str], secret_key: t.Any) -> dict[str, t.Any] | None:
        """The data of the first value naming a Flask-Session session (now removed from Redis), or ``None``.

        :raises StoreUnavailable: Redis cannot be reached.
        """
        import redis

        for value in values[:_MAX_CANDIDATES]:
            session_id = self._session_id(value, secret_key)
            if session_id is None:
                continue
            try:
                raw = self.client.getdel(self.prefix + session_id)
            except redis.RedisError as exc:
                raise StoreUnavailable(f"Redis failed while migrating a Flask-Session session: {exc}",
                                       store="redis") from exc
            data = _decode(raw) if raw is not None else None
            if data is not None:
                return data
        return None

    def _session_id(self, value: str, secret_key: t.Any) -> str | None:
        if self.use_signer:
            if not secret_key:
                return None
            from itsdangerous import BadSignature, Signer

            try:
                value = Signer(secret_key, salt="flask-session", key_derivation="hmac").unsign(value).decode()
            except (BadSignature, UnicodeDecodeError):
                return None
        return value if _FLASK_SESSION_ID.fullmatch(value) else None


def _require_msgspec() -> None:
    """The migration reads Flask-Session's records with msgspec: without it, a
    :class:`ConfigurationError` at ``init_app``, not a 500 on every request."""
    try:
        import msgspec  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "KITSESSION_MIGRATE_FLASK_SESSION", "needs msgspec to read Flask-Session's records: "
            "pip install 'kitsession-wsgi[flask-session]'") from None


def _decode(raw: bytes) -> dict[str, t.Any] | None:
    import msgspec

    for decoder in (msgspec.msgpack.Decoder(), msgspec.json.Decoder()):
        try:
            data = decoder.decode(raw)
        except msgspec.DecodeError:
            continue
        return data if isinstance(data, dict) and all(type(key) is str for key in data) else None
    return None


class SizedIdStore:
    """A store whose ``create_id`` makes ids of ``secrets.token_urlsafe(length)`` (``SESSION_ID_LENGTH``);
    everything else is the wrapped store's."""

    def __init__(self, store: SessionStore, length: int) -> None:
        self.store = store
        self.length = length

    def create_id(self) -> str:
        return secrets.token_urlsafe(self.length)

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self.store, name)


def uses_flask_session(config: Mapping[str, t.Any]) -> bool:
    """Whether the app is configured for Flask-Session (it sets ``SESSION_TYPE``)."""
    return config.get("SESSION_TYPE") is not None


def refuse_keys_without_type(config: Mapping[str, t.Any]) -> None:
    """Flask-Session's keys without ``SESSION_TYPE`` are a mistake, not per-process memory.

    :raises ConfigurationError: naming ``SESSION_TYPE`` and the keys found.
    """
    found = [key for key in FLASK_SESSION_KEYS if config.get(key) is not None]
    if found:
        raise ConfigurationError(
            "SESSION_TYPE", f"is not set but Flask-Session's {', '.join(found)} are (Flask-Session refuses "
            "this too): set SESSION_TYPE ('redis', 'memcached', 'sqlalchemy', 'filesystem', 'cachelib') or "
            "KITSESSION_STORE")


def flask_session_setup(app: t.Any) -> FlaskSessionSetup:
    """The store (and purge cadence) Flask-Session's keys in ``app.config`` describe.

    :raises ConfigurationError: a type or key with no equivalent, or a bad value, naming the key.
    """
    config = app.config
    kind = config.get("SESSION_TYPE")
    if not isinstance(kind, str):
        raise ConfigurationError("SESSION_TYPE", f"must be a string, got {kind!r}")
    kind = kind.lower()
    if kind in UNSUPPORTED_TYPES:
        raise ConfigurationError("SESSION_TYPE", f"{kind!r}: {UNSUPPORTED_TYPES[kind]}")
    prefix = config.get("SESSION_KEY_PREFIX", DEFAULT_KEY_PREFIX)
    if not isinstance(prefix, str) or not prefix:
        raise ConfigurationError("SESSION_KEY_PREFIX", f"must be a non-empty string, got {prefix!r}")
    if config.get("SESSION_SQLALCHEMY_SCHEMA") is not None:
        raise ConfigurationError(
            "SESSION_SQLALCHEMY_SCHEMA", "PeeweeStore uses the connection's schema: drop the key and put "
            "the schema in the database's search_path, or name a table of the default schema")

    migrate = config.get("KITSESSION_MIGRATE_FLASK_SESSION", False)
    if not isinstance(migrate, bool):
        raise ConfigurationError("KITSESSION_MIGRATE_FLASK_SESSION", f"must be True or False, got {migrate!r}")
    if migrate and kind != "redis":
        raise ConfigurationError("KITSESSION_MIGRATE_FLASK_SESSION",
                                 "moves Flask-Session's sessions from Redis only (SESSION_TYPE='redis')")

    store: SessionStore
    if kind == "redis":
        # While migrating, KitSession's records live apart from Flask-Session's: a lookup of
        # ``prefix + cookie value`` (no ":" in it) can then never reach, and GETDEL, one of them.
        store = _redis_store(config.get("SESSION_REDIS"), prefix + MIGRATION_NAMESPACE if migrate else prefix)
    elif kind == "memcached":
        store = _memcached_store(config.get("SESSION_MEMCACHED"), prefix)
    elif kind == "sqlalchemy":
        store = _sql_store(app, config.get("SESSION_SQLALCHEMY"),
                           config.get("SESSION_SQLALCHEMY_TABLE", DEFAULT_TABLE),
                           config.get("SESSION_SQLALCHEMY_BIND_KEY"))
    elif kind == "filesystem":
        store = _file_store(config.get("SESSION_FILE_DIR"), "SESSION_FILE_DIR")
    elif kind == "cachelib":
        store = _cachelib_store(config.get("SESSION_CACHELIB"))
    else:
        raise ConfigurationError("SESSION_TYPE", f"unknown type {kind!r}: {_INSTEAD}")

    length = config.get("SESSION_ID_LENGTH", DEFAULT_ID_LENGTH)
    if isinstance(length, bool) or not isinstance(length, int) or length < DEFAULT_ID_LENGTH or length > MAX_ID_BYTES:
        raise ConfigurationError(
            "SESSION_ID_LENGTH", f"must be a whole number of random bytes from 32 (256 bits, KitSession's "
            f"floor) to {MAX_ID_BYTES} (the longest id a cookie carries is {MAX_ID_LENGTH} characters), "
            f"got {length!r}")
    if length != DEFAULT_ID_LENGTH:
        store = t.cast(SessionStore, SizedIdStore(store, length))

    cleanup = config.get("SESSION_CLEANUP_N_REQUESTS")
    if cleanup is not None and (isinstance(cleanup, bool) or not isinstance(cleanup, int) or cleanup < 1):
        raise ConfigurationError("SESSION_CLEANUP_N_REQUESTS", f"must be None or a positive int, got {cleanup!r}")

    migration = None
    if migrate:
        _require_msgspec()
        migration = FlaskSessionMigration(t.cast(t.Any, _unsized(store)).client, prefix,
                                          bool(config.get("SESSION_USE_SIGNER", False)))
    return FlaskSessionSetup(store=store, cleanup_every=cleanup, migration=migration)


def _unsized(store: SessionStore) -> SessionStore:
    return store.store if isinstance(store, SizedIdStore) else store


def _redis_store(client: t.Any, prefix: str) -> SessionStore:
    import redis

    from ..stores.redis import RedisStore

    if client is None:
        # Flask-Session's default: a client on localhost:6379.
        client = redis.Redis()
    if not isinstance(client, (redis.Redis, redis.RedisCluster)):
        raise ConfigurationError("SESSION_REDIS", f"must be a redis.Redis client, got {type(client).__name__}")
    try:
        return RedisStore(t.cast(redis.Redis, client), prefix=prefix)
    except ConfigurationError as exc:
        raise ConfigurationError("SESSION_KEY_PREFIX", str(exc)) from exc


def memcached_servers(client: t.Any) -> list[t.Any]:
    """The server addresses of a pymemcache client (``Client``, ``PooledClient``,
    ``RetryingClient``) or cluster (``HashClient``)."""
    inner = getattr(client, "_client", None)  # RetryingClient wraps the real client
    if inner is not None and not hasattr(client, "server") and not hasattr(client, "clients"):
        client = inner
    nodes = getattr(client, "clients", None)
    if isinstance(nodes, Mapping):
        return [node.server for node in nodes.values()]
    server = getattr(client, "server", None)
    if server is None:
        raise ConfigurationError(
            "SESSION_MEMCACHED", f"pass a pymemcache Client, PooledClient or HashClient, got {type(client).__name__}")
    return [server]


def _memcached_store(client: t.Any, prefix: str) -> SessionStore:
    from ..stores.memcached import MemcachedStore

    # KitSession's own pool on the same servers: confirmed writes, no_delay (see BENCHMARKS.md).
    servers = ["127.0.0.1:11211"] if client is None else memcached_servers(client)
    try:
        return MemcachedStore.from_servers(servers, key_prefix=prefix)
    except ConfigurationError as exc:
        raise ConfigurationError("SESSION_KEY_PREFIX" if exc.option == "key_prefix" else "SESSION_MEMCACHED",
                                 str(exc)) from exc


def database_url(app: t.Any, db: t.Any, bind_key: str | None) -> str:
    """The peewee URL of a Flask-SQLAlchemy database's engine (driver names dropped)."""
    with app.app_context():
        engine = db.engines[bind_key] if bind_key else db.engine
    return _peewee_url(engine.url, "SESSION_SQLALCHEMY")


def _sqlalchemy_url(uri: str) -> t.Any:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(uri)
    except ArgumentError as exc:
        raise ConfigurationError("SQLALCHEMY_DATABASE_URI", f"is not a database URL: {exc}") from exc


def _peewee_url(url: t.Any, key: str) -> str:
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql", "mysql", "mariadb"):
        raise ConfigurationError(key, f"PeeweeStore supports SQLite, PostgreSQL and MySQL/MariaDB, not {backend!r}")
    return str(url.set(drivername="mysql" if backend == "mariadb" else backend).render_as_string(hide_password=False))


def _shared_memory_sqlite() -> t.Any:
    """One in-memory SQLite connection shared by every thread, as Flask-SQLAlchemy's engine
    (a ``StaticPool``) shares it: a connection per thread would each see an empty database."""
    import peewee

    return peewee.SqliteDatabase(":memory:", thread_safe=False, check_same_thread=False)


def _file_store(directory: t.Any, key: str) -> SessionStore:
    """A SQLite file in ``directory`` (created, with its table): shared by every process on it,
    and it survives restarts, as Flask-Session's files do."""
    import os

    from ..stores.peewee import PeeweeStore

    if directory is None:
        directory = os.path.join(os.getcwd(), "flask_session")  # Flask-Session's default
    if not isinstance(directory, (str, os.PathLike)) or not str(directory):
        raise ConfigurationError(key, f"must be a directory path, got {directory!r}")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(key, f"cannot create {str(directory)!r}: {exc}") from exc
    path = os.path.join(os.fspath(directory), FILE_STORE_NAME)
    store = PeeweeStore.from_url("sqlite:///" + os.path.abspath(path))
    store.create_tables()
    return store


def _sql_store(app: t.Any, db: t.Any, table: t.Any, bind_key: t.Any) -> SessionStore:
    from ..stores.peewee import PeeweeStore

    if not isinstance(table, str) or not table:
        raise ConfigurationError("SESSION_SQLALCHEMY_TABLE", f"must be a table name, got {table!r}")
    if db is None:
        # Flask-Session builds SQLAlchemy(app) itself: its engine is SQLALCHEMY_DATABASE_URI's.
        uri = app.config.get("SQLALCHEMY_DATABASE_URI")
        if not isinstance(uri, str) or not uri:
            raise ConfigurationError(
                "SESSION_SQLALCHEMY", "set it to your flask_sqlalchemy.SQLAlchemy() instance, or set "
                "SQLALCHEMY_DATABASE_URI (the database KitSession then uses)")
        url = _peewee_url(_sqlalchemy_url(uri), "SQLALCHEMY_DATABASE_URI")
    else:
        try:
            url = database_url(app, db, bind_key)
        except (AttributeError, KeyError, RuntimeError) as exc:
            raise ConfigurationError("SESSION_SQLALCHEMY", f"cannot read its engine's URL ({exc}): call "
                                     "db.init_app(app) before KitSession(app)") from exc
    # Flask-SQLAlchemy's in-memory spellings (SQLAlchemy renders ":memory:" URL-encoded)
    if url in ("sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite:///%3Amemory%3A"):
        store = PeeweeStore(_shared_memory_sqlite(), table_name=table)
        store.create_tables()
        return store
    try:
        store = PeeweeStore.from_url(url, table_name=table)
    except ConfigurationError as exc:
        raise ConfigurationError("SESSION_SQLALCHEMY", str(exc)) from exc
    database = store.database
    if database.table_exists(table):
        columns = {column.name for column in database.get_columns(table)}
        if _FLASK_SESSION_COLUMNS <= columns:
            store.close()
            raise ConfigurationError(
                "SESSION_SQLALCHEMY_TABLE", f"table {table!r} holds Flask-Session's sessions (columns "
                f"{sorted(columns)}): name a new table for KitSession, e.g. SESSION_SQLALCHEMY_TABLE="
                "'kitsession_sessions'")
    # Flask-Session creates its table when the app starts; so does the switch.
    store.create_tables()
    return store


def _cachelib_store(cache: t.Any) -> SessionStore:
    cachelib = importlib.import_module("cachelib") if _has_cachelib() else None
    simple_cache = getattr(cachelib, "SimpleCache", None)
    if simple_cache is not None and isinstance(cache, simple_cache):
        # One process's memory, as a SimpleCache is.
        return MemoryStore()
    file_cache = getattr(cachelib, "FileSystemCache", None)
    if cache is None:
        # Flask-Session's default: FileSystemCache("flask_session"), relative to the working directory.
        return _file_store("flask_session", "SESSION_CACHELIB")
    if file_cache is not None and isinstance(cache, file_cache):
        return _file_store(getattr(cache, "_path"), "SESSION_CACHELIB")
    described = type(cache).__name__
    raise ConfigurationError(
        "SESSION_CACHELIB", f"{described} has no KitSession equivalent: use cachelib.SimpleCache() for "
        "sessions in memory, SESSION_TYPE='redis' for a RedisCache, 'memcached' for a MemcachedCache, or "
        "SESSION_TYPE='sqlalchemy' on SQLite for sessions on disk")


def _has_cachelib() -> bool:
    return importlib.util.find_spec("cachelib") is not None
