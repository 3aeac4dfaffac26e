"""A Flask app for gunicorn in tests/test_deploy_workers.py: sign in, then ask who you are.

Its store is ``KITSESSION_STORE`` from the environment (a MemoryStore without it);
each response names the worker's pid so a test can see both workers answered.
"""

from __future__ import annotations

import os

from flask import Flask, session

from kitsession_wsgi.flask import KitSession

app = Flask(__name__)
app.config.update(SECRET_KEY="worker-test-key", SESSION_COOKIE_SECURE=False, KITSESSION_SECURE=False)
KitSession(app)


@app.post("/login")
def login() -> dict[str, object]:
    session["user"] = "alice"
    return {"pid": os.getpid()}


@app.get("/me")
def me() -> dict[str, object]:
    return {"pid": os.getpid(), "user": session.get("user")}
