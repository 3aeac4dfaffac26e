"""Revocation wins every race for header (``Authorization: Bearer``) sessions too.

An API request that writes its session while another device signs it out must
never bring the session back, never get a cookie and never be handed a token:
first with the window widened (``InterleavingStore`` runs the revoke just before
the API request's save), then as a natural thread race through the middleware,
in bounded rounds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from werkzeug.test import Client

from kitsession_wsgi import MemoryStore, SessionManager, session_key
from kitsession_wsgi.wsgi import SessionMiddleware

from session_helpers import InterleavingStore

KEYS = ["a-key-for-tests"]
USER = 7
ROUNDS = 20
THREADS = 4
REQUESTS_PER_THREAD = 25
JOIN_TIMEOUT = 60.0


def test_a_revoke_just_before_an_api_save_wins() -> None:
    store = InterleavingStore()
    manager = SessionManager(store, keys=KEYS, bearer=True)
    api = manager.create_session(user_id=USER, data={"n": 0})
    token = manager.session_token(api)
    browser = manager.create_session(user_id=USER, data={"browser": True})

    request = manager.initialize_session({"Authorization": f"Bearer {token}"})
    request.data["n"] = 1
    store.before_set = [lambda: manager.remove_all_sessions_for_user(USER, browser)]
    assert manager.commit(request) is None
    assert request.is_destroyed
    assert manager.bearer_headers(request) == [("Vary", "Authorization")], "no token for a revoked session"
    assert store.get(session_key(token.rsplit(".", 1)[0])) is None, "the revoked session came back"
    assert manager.initialize_session({"Authorization": f"Bearer {token}"}).is_new


def _api_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    session = environ["kitsession"].session
    if session.is_new:
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"anonymous"]
    key = environ["QUERY_STRING"]
    session.data[key] = session.data.get(key, 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def test_api_writes_racing_a_revoke_never_bring_the_session_back_nor_get_a_cookie() -> None:
    for round_number in range(ROUNDS):
        manager = SessionManager(MemoryStore(), keys=KEYS, bearer=True)
        app = SessionMiddleware(_api_app, manager)
        token = manager.session_token(manager.create_session(user_id=USER, data={"start": round_number}))
        handle = session_key(token.rsplit(".", 1)[0])
        revoked = threading.Event()
        problems: list[str] = []

        def client_thread(index: int) -> None:
            client = Client(app)
            for _ in range(REQUESTS_PER_THREAD):
                was_revoked = revoked.is_set()
                response = client.get(f"/?k{index}", headers={"Authorization": f"Bearer {token}"})
                if response.headers.getlist("Set-Cookie"):
                    problems.append("a header request got a Set-Cookie")
                if response.headers.get("Session-Token"):
                    problems.append("a token was handed out for the same session")
                if was_revoked and response.status_code != 401:
                    problems.append(f"served after the revoke returned: {response.status_code}")

        def revoke() -> None:
            manager.remove_all_sessions_for_user(USER)
            revoked.set()

        threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(THREADS)]
        threads.append(threading.Thread(target=revoke))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
            assert not thread.is_alive(), "a request hung"
        assert problems == [], problems[:3]
        assert manager.store.get(handle) is None, f"round {round_number}: the revoked session came back"
        assert manager.get_sessions_for_user(USER) == []
