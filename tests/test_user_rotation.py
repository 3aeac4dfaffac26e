"""A new id whenever the session's user changes, and the user rule for new sessions.

Apps that log in by writing ``session["user_id"]`` (the common Flask idiom) get the
fixation defence of ``with_new_session`` without asking for it: an id planted before
the login is worthless after it.  And however the data was set, a new session that
names a user is linked to that user, so revoke-all and listings find it.
Every store, through the core, the WSGI middleware and the Flask extension.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify, request, session
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from kitsession_wsgi import SessionManager, SessionStore
from kitsession_wsgi.flask import KitSession
from kitsession_wsgi.wsgi import SessionMiddleware

from session_helpers import live_records
from store_kinds import STORE_KINDS, open_store, store_servers  # noqa: F401 (store_servers is a fixture)


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, store_servers: Any) -> Iterator[SessionStore]:
    with open_store(request.param, tmp_path, store_servers) as opened:
        yield opened


def records_of(store: SessionStore, user_id: Any) -> list[str]:
    return [record.key for record in live_records(store) if record.user_id == user_id]


# -- the core --------------------------------------------------------------------------------


def cookie_header(manager: SessionManager, session: Any) -> str:
    value = manager.set_session_cookie(session).split(";", 1)[0]
    return value


def test_a_new_session_whose_data_names_a_user_in_place_is_linked(store: SessionStore) -> None:
    manager = SessionManager(store, keys="k", secure=False)
    fresh = manager.initialize_session({})
    fresh.data["user_id"] = 7  # in place, as flask.session["user_id"] = 7 does on a first visit
    assert manager.commit(fresh) is not None
    assert fresh.user_id == 7
    assert [s.handle for s in manager.get_sessions_for_user(7)] == [fresh.handle]
    assert manager.remove_all_sessions_for_user(7) == 1
    assert records_of(store, 7) == []


@pytest.mark.parametrize("route", ["data-key-in-place", "data-assigned", "user_id-setter"])
@pytest.mark.parametrize("before", [None, 5], ids=["anonymous", "user-5"])
def test_a_stored_session_whose_user_changes_gets_a_new_id(store: SessionStore, route: str, before: Any) -> None:
    manager = SessionManager(store, keys="k", secure=False)
    planted = manager.create_session(user_id=before, data={"csrf": "t"})
    header = cookie_header(manager, planted)
    victim = manager.initialize_session({"Cookie": header})
    if route == "data-key-in-place":
        victim.data["user_id"] = 7
    elif route == "data-assigned":
        victim.data = {"csrf": "t", "user_id": 7}
    else:
        victim.user_id = 7
    set_cookie = manager.commit(victim)
    assert set_cookie is not None, "the new id is sent"
    assert victim.id != planted.id and victim.handle != planted.handle
    assert victim.user_id == 7 and victim.data["csrf"] == "t"
    # The planted id is dead at once: the attacker's cookie is an anonymous session.
    attacker = manager.initialize_session({"Cookie": header})
    assert attacker.is_new and attacker.user_id is None
    assert manager.get_session(planted.id) is None  # type: ignore[arg-type]
    assert records_of(store, 7) == [victim.handle]
    assert records_of(store, before) == []


def test_the_rotation_can_be_turned_off(store: SessionStore) -> None:
    manager = SessionManager(store, keys="k", secure=False, rotate_on_user_change=False)
    planted = manager.create_session(data={"csrf": "t"})
    loaded = manager.initialize_session({"Cookie": cookie_header(manager, planted)})
    loaded.data["user_id"] = 7
    manager.commit(loaded)
    assert loaded.id == planted.id, "saved in place: the planted id now carries user 7"
    assert records_of(store, 7) == [planted.handle]


def test_an_unchanged_user_keeps_its_id(store: SessionStore) -> None:
    manager = SessionManager(store, keys="k", secure=False)
    stored = manager.create_session(user_id=7, data={"user_id": 7})
    loaded = manager.initialize_session({"Cookie": cookie_header(manager, stored)})
    loaded.data["user_id"] = 7
    loaded.data["n"] = 1
    assert manager.commit(loaded) is None
    assert loaded.id == stored.id


def test_a_request_in_flight_on_the_old_id_keeps_the_replaced_marker_behaviour(store: SessionStore) -> None:
    """A request sent with the old cookie before the login answered: anonymous, and its
    response does not clear the cookie (which would log out the new one if it arrived last)."""
    manager = SessionManager(store, keys="k", secure=False)
    stored = manager.create_session(data={"csrf": "t"})
    header = cookie_header(manager, stored)
    login = manager.initialize_session({"Cookie": header})
    login.data["user_id"] = 7
    manager.commit(login)
    in_flight = manager.initialize_session({"Cookie": header})
    assert in_flight.is_new
    assert manager.commit(in_flight) is None, "no clearing cookie"


# -- the adapters ----------------------------------------------------------------------------


def wsgi_app(store: SessionStore, **options: Any) -> Any:
    manager = SessionManager(store, keys="k", secure=False, **options)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        req = Request(environ)
        current = environ["kitsession"].session
        if req.path == "/login":
            current.data["user_id"] = int(req.args["user"])
        elif req.path == "/token":
            current.data["csrf"] = "t"
        return Response(str(current.user_id))(environ, start_response)

    return SessionMiddleware(app, manager)


def flask_app(store: SessionStore, **options: Any) -> Flask:
    app = Flask(__name__)
    # These tests log in by writing the user into the data: under Flask that is the opt-in.
    app.config.update(SECRET_KEY="k", KITSESSION_USER_ID_FROM_DATA=True)

    @app.get("/login")
    def login() -> Any:
        session["user_id"] = int(request.args["user"])
        return jsonify(ok=True)

    @app.get("/token")
    def token() -> Any:
        session["csrf"] = "t"
        return jsonify(ok=True)

    @app.get("/whoami")
    def whoami() -> Any:
        return str(session.get("user_id"))

    KitSession(app, store=store, secure=False, **options)
    return app


ADAPTERS = {"wsgi-middleware": wsgi_app, "flask": flask_app}


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_logging_in_by_writing_the_user_into_the_session_rotates_the_id(store: SessionStore, adapter: str) -> None:
    app = ADAPTERS[adapter](store)
    browser = Client(app)
    browser.get("/token")  # an anonymous session with a CSRF token: what an attacker plants
    planted = browser.get_cookie("session")
    assert planted is not None
    browser.get("/login?user=7")
    after = browser.get_cookie("session")
    assert after is not None and after.value != planted.value
    assert browser.get("/whoami").get_data(as_text=True) == "7"
    attacker = Client(app)
    attacker.set_cookie("session", planted.value)
    assert attacker.get("/whoami").get_data(as_text=True) == "None", "the planted id is dead"
    assert len(records_of(store, 7)) == 1


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_a_first_visit_login_through_the_data_is_linked(store: SessionStore, adapter: str) -> None:
    app = ADAPTERS[adapter](store)
    Client(app).get("/login?user=7")
    assert len(records_of(store, 7)) == 1
    manager = SessionManager(store, keys="k", secure=False)
    assert manager.remove_all_sessions_for_user(7) == 1


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_the_adapters_honour_the_option_off(store: SessionStore, adapter: str) -> None:
    app = ADAPTERS[adapter](store, rotate_on_user_change=False)
    browser = Client(app)
    browser.get("/token")
    planted = browser.get_cookie("session")
    browser.get("/login?user=7")
    after = browser.get_cookie("session")
    assert planted is not None and after is not None and after.value == planted.value
