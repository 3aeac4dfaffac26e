"""kitsession example: accounts, "Your devices" and "Sign out every other device".

Run it with ``python -m examples.flask_app`` (or ``make run``); see README.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from . import api, auth, devices, home
from .csrf import init_csrf
from .formatting import init_formatting
from .models import MODELS, open_database
from .notices import init_notices
from .sessions import init_sessions
from .settings import load_config


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the example app.

    :param config: Flask config overriding the defaults and the environment
        (see :mod:`examples.flask_app.settings`), e.g. ``{"EXAMPLE_DATABASE": path}``.

    Opens the SQLite file and creates the users and sessions tables if they
    do not exist yet.
    """
    app = Flask(__name__)
    load_config(app, config)

    database = open_database(app.config["EXAMPLE_DATABASE"])
    database.create_tables(MODELS, safe=True)
    init_sessions(app, database)
    init_notices(app)
    init_csrf(app)
    init_formatting(app)

    app.register_blueprint(home.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(devices.bp)
    app.register_blueprint(api.bp)
    app.register_error_handler(HTTPException, render_error)
    app.after_request(no_store)
    return app


def no_store(response: Response) -> Response:
    """Keep every page but the static files out of caches (``Cache-Control: no-store``).

    Account pages show an e-mail address, devices and a note, and every form
    carries a CSRF token: none of that may be kept by a shared cache or shown
    again from the browser's cache after logging out.
    """
    if request.endpoint != "static" and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def render_error(error: HTTPException) -> ResponseReturnValue:
    """Client and server errors as a page of the site rather than werkzeug's bare HTML."""
    return render_template("error.html", error=error), error.code or 500
