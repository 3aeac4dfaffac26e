"""Flask's settings read as Flask's own session interface reads them, and ``SECRET_KEY_FALLBACKS``'s shape."""

from __future__ import annotations

import gc
import weakref
from datetime import timedelta
from urllib.parse import quote

import flask
import pytest

from kitsession_wsgi import ConfigurationError, MemoryStore
from kitsession_wsgi.flask import KitSession
from kitsession_wsgi.signing import CookieSigner, normalize_keys


class KeyedApp(flask.Flask):
    secret_key = "class-attribute-key"


def _counter_app(app: flask.Flask) -> flask.Flask:
    @app.get("/")
    def index() -> str:
        flask.session["n"] = flask.session.get("n", 0) + 1
        return str(flask.session["n"])

    return app


def test_a_flask_subclass_with_a_class_attribute_key_has_sessions() -> None:
    app = _counter_app(KeyedApp(__name__))
    assert app.config["SECRET_KEY"] is None
    KitSession(app, store=MemoryStore())
    client = app.test_client()
    assert client.get("/").text == "1"
    assert client.get("/").text == "2"
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.value.startswith("s%3A")


def test_a_secret_key_assigned_after_init_app_counts_from_the_next_request() -> None:
    app = _counter_app(flask.Flask(__name__))
    KitSession(app, store=MemoryStore())
    client = app.test_client()
    assert client.get("/").status_code == 500  # Flask's null session refuses the write
    app.secret_key = "late-key"
    assert client.get("/").text == "1"
    assert client.get("/").text == "2"


def test_permanent_session_lifetime_is_read_from_the_app_attribute() -> None:
    class ShortLived(flask.Flask):
        secret_key = "k"
        permanent_session_lifetime = timedelta(minutes=5)

    app = ShortLived(__name__)
    KitSession(app, store=MemoryStore(), permanent=True)
    _counter_app(app)
    client = app.test_client()
    client.get("/")
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.max_age == 300


def _forged_cookie(key: str, app: flask.Flask) -> str:
    manager = app.extensions["kitsession"].manager
    stored = manager.create_session(data={"n": 41})
    assert stored.id is not None
    return quote(CookieSigner(normalize_keys([key])).sign(stored.id), safe="")


def test_a_string_secret_key_fallbacks_is_one_key_not_its_characters() -> None:
    app = _counter_app(flask.Flask(__name__))
    app.config.update(SECRET_KEY="current", SECRET_KEY_FALLBACKS="old-secret")
    store = MemoryStore()
    KitSession(app, store=store)
    client = app.test_client()
    with app.test_request_context():
        forged = _forged_cookie("-", app)
        rotated = _forged_cookie("old-secret", app)
    client.set_cookie("session", forged)
    assert client.get("/").text == "1"  # the one-character key "-" opens nothing
    client.set_cookie("session", rotated)
    assert client.get("/").text == "42"  # the whole old key still verifies


@pytest.mark.parametrize("fallbacks", [[""], [3], {"k": "v"}], ids=["empty-key", "int-key", "dict"])
def test_a_malformed_secret_key_fallbacks_is_a_configuration_error(fallbacks: object) -> None:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="current", SECRET_KEY_FALLBACKS=fallbacks)
    with pytest.raises(ConfigurationError, match="SECRET_KEY_FALLBACKS"):
        KitSession(app, store=MemoryStore())


def test_an_app_with_kitsession_is_freed_on_zero_refcount() -> None:
    """No reference cycle through ``app.extensions`` back to the app (Flask's own rule, its issue #3761)."""
    gc.collect()
    gc.disable()
    try:
        app = flask.Flask(__name__)
        KitSession(app, store=MemoryStore())
        freed = weakref.ref(app)
        del app
        assert freed() is None
    finally:
        gc.enable()
