"""Where the example keeps its sessions, and how a request finds its user.

By default sessions live in a :class:`~kitsession_wsgi.stores.peewee.PeeweeStore`
table of the app's SQLite file, next to the users (so they survive a restart,
and deleting a user deletes their sessions through a foreign key).  The
``KITSESSION_STORE`` URL moves them to any other store without a code change.
"""

from __future__ import annotations

import peewee
from flask import Flask

from kitsession_wsgi import SessionStore
from kitsession_wsgi.flask import KitSession
from kitsession_wsgi.stores.base import UserId
from kitsession_wsgi.stores.peewee import PeeweeStore
from kitsession_wsgi.stores.urls import store_from_url

from .models import User


def build_session_store(url: str | None, database: peewee.Database) -> SessionStore:
    """The store named by ``url``, or a PeeweeStore in ``database``; its tables created.

    Table creation is explicit (stores never create tables on their own) and
    safe to repeat at every start.
    """
    store: SessionStore
    if url:
        store = store_from_url(url)
    else:
        store = PeeweeStore(database, table_name="example_sessions", user_model=User)
    store.create_tables()  # idempotent; a no-op for stores that need no tables
    return store


def load_user(user_id: UserId) -> User | None:
    """The signed-in user (``g.user``), or ``None`` when the account is gone."""
    return User.get_or_none(User.id == user_id)


def init_sessions(app: Flask, database: peewee.Database) -> None:
    """Give ``app`` server-side sessions in the store its config names."""
    store = build_session_store(app.config.get("KITSESSION_STORE"), database)
    kitsession = KitSession(store=store)
    kitsession.user_loader(load_user)
    kitsession.init_app(app)
