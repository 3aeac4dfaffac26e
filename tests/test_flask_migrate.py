"""Moving sessions under Flask: ``KITSESSION_MIGRATE_FROM`` and ``flask kitsession migrate``.

Real stores: a MemoryStore moving to SQLite (PeeweeStore), and SQLite files named by URL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from kitsession_wsgi import MemoryStore, SessionManager
from kitsession_wsgi.flask import KitSession
from kitsession_wsgi.stores.migrating import MigratingStore

peewee_store = pytest.importorskip("kitsession_wsgi.stores.peewee")
PeeweeStore = peewee_store.PeeweeStore


def _sqlite(path: Path) -> PeeweeStore:
    store = PeeweeStore.from_url(f"sqlite:///{path}")
    store.create_tables()
    return store


def _app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k", **config)
    return app


def test_migrate_drains_the_apps_moving_store_with_a_progress_bar(tmp_path: Path) -> None:
    """Memory -> SQLite: every session moves, the source ends empty, the data is intact."""
    old = MemoryStore()
    old_manager = SessionManager(old)
    sessions = [old_manager.create_session(user_id=n % 3, data={"n": n}) for n in range(25)]
    new = _sqlite(tmp_path / "new.db")
    app = _app()
    KitSession(app, store=MigratingStore(new, old))

    result = app.test_cli_runner().invoke(args=["kitsession", "migrate"])

    assert result.exit_code == 0, result.output
    assert "moving sessions" in result.output
    assert "moved 25 sessions" in result.output and "0 left in the old store" in result.output
    assert old.get_all() == []
    manager = SessionManager(new)
    for session in sessions:
        moved = manager.get_session(session.id)  # type: ignore[arg-type]
        assert moved is not None and moved.data == session.data and moved.user_id == session.user_id
    new.close()


def test_migrate_from_a_url_moves_into_the_apps_store(tmp_path: Path) -> None:
    old = _sqlite(tmp_path / "old.db")
    sessions = [SessionManager(old).create_session(data={"n": n}) for n in range(5)]
    old.close()
    app = _app(KITSESSION_STORE=f"sqlite:///{tmp_path / 'new.db'}")
    KitSession(app)
    app.extensions["kitsession"].store.create_tables()

    result = app.test_cli_runner().invoke(args=["kitsession", "migrate", "--from", f"sqlite:///{tmp_path / 'old.db'}"])

    assert result.exit_code == 0, result.output
    assert "moved 5 sessions" in result.output
    manager = app.extensions["kitsession"].manager
    assert all(manager.get_session(s.id).data == s.data for s in sessions)  # type: ignore[arg-type, union-attr]
    reopened = _sqlite(tmp_path / "old.db")
    assert reopened.get_all() == []
    reopened.close()


def test_migrate_without_a_source_says_what_to_give() -> None:
    app = _app()
    KitSession(app)
    result = app.test_cli_runner().invoke(args=["kitsession", "migrate"])
    assert result.exit_code == 2 and "--from URL" in result.output


def test_migrate_from_a_bad_url_names_the_option() -> None:
    app = _app()
    KitSession(app)
    result = app.test_cli_runner().invoke(args=["kitsession", "migrate", "--from", "nosuch://x"])
    assert result.exit_code == 2 and "--from" in result.output and "unknown store URL scheme" in result.output


def test_kitsession_migrate_from_serves_old_sessions_and_moves_them(tmp_path: Path) -> None:
    old = _sqlite(tmp_path / "old.db")
    old_manager = SessionManager(old, keys="k")
    session = old_manager.create_session(data={"cart": [1]})
    cookie = old_manager.cookie_value(session.id)  # type: ignore[arg-type]
    app = _app(KITSESSION_STORE=f"sqlite:///{tmp_path / 'new.db'}",
               KITSESSION_MIGRATE_FROM=f"sqlite:///{tmp_path / 'old.db'}",
               SESSION_COOKIE_SECURE=False)
    KitSession(app, secure=False)
    store = app.extensions["kitsession"].store
    assert isinstance(store, MigratingStore)
    store.target.create_tables()

    @app.get("/")
    def index() -> str:
        from flask import session as flask_session

        return repr(flask_session.get("cart"))

    client = app.test_client()
    client.set_cookie("session", cookie)
    assert client.get("/").get_data(as_text=True) == "[1]"
    assert old.get_all() == [] and store.target.get(session.handle) is not None
    old.close()
    store.close()
