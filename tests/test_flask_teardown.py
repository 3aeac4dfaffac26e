"""The teardown safety net frees a session lock when ``save_session`` never ran (issue 12).

With ``TESTING`` (or ``PROPAGATE_EXCEPTIONS``) an exception leaves the request without
``save_session``; the lock must still be released.  The adapter finds the request's session
through a context variable of its own, the same on every supported Flask (it used Flask 3.1's
private ``RequestContext._session``, which Flask 2.3-3.0 do not have, so the net did nothing there).
"""

from __future__ import annotations

import pytest
from flask import Flask, session

from kitsession_wsgi import MemoryStore
from kitsession_wsgi.flask import KitSession, session_lock


def test_lock_is_released_when_an_exception_skips_save_session() -> None:
    store = MemoryStore()
    app = Flask(__name__)
    app.config.update(SECRET_KEY="teardown-secret", TESTING=True)
    KitSession(app, store=store)

    @app.get("/login")
    def login() -> str:
        session["user"] = "ada"
        return ""

    @app.get("/boom")
    @session_lock
    def boom() -> str:
        session["n"] = 1
        raise RuntimeError("propagated to the test client")

    client = app.test_client()
    client.get("/login")
    (record,) = store.get_all()
    with pytest.raises(RuntimeError, match="propagated"):
        client.get("/boom")
    assert store.acquire_lock(record.key, "another-request", 60), "the failed request still holds the lock"
    store.release_lock(record.key, "another-request")
    assert store.get(record.key) is not None and '"n"' not in store.get(record.key).data  # type: ignore[union-attr]
