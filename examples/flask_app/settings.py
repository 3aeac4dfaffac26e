"""Configuration of the example app: defaults, then environment variables, then ``create_app(config)``.

Environment variables:

* ``SECRET_KEY``: signs the session cookie.  Without it a random key is
  generated once and kept in ``<instance>/secret_key``, so a restart keeps
  every browser logged in.
* ``KITSESSION_EXAMPLE_DB``: the SQLite file holding users and sessions
  (default ``<instance>/kitsession-example.sqlite3``).
* ``KITSESSION_STORE``: a store URL (``memory``, ``memcached://host:port,...``,
  ``redis://...``, ``postgresql://...``, ``mysql://...``, ``sqlite:///...``)
  to keep sessions somewhere else than the SQLite file.
* ``KITSESSION_EXAMPLE_HTTPS=1``: the app is served over HTTPS (behind a TLS
  proxy): the cookie is ``Secure`` and named ``__Host-session``, which browsers
  refuse to let a subdomain or another path set (no cookie tossing).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from kitsession_wsgi import days_to_max_age

#: Defaults; each can be overridden by ``create_app(config)``.
DEFAULTS: dict[str, Any] = {
    # The example serves plain http on the loopback interface.  A Secure cookie
    # is for HTTPS only: browsers' exceptions for local http differ and clients
    # such as curl make none, so the cookie would be dropped.  Behind HTTPS
    # (any real deployment), set it True: that is the library's default.
    "KITSESSION_SECURE": False,
    # A session ends after a week without a request, or 30 days after login,
    # whichever comes first; each request moves "last active" (at most once a minute).
    "KITSESSION_IDLE_TIMEOUT": days_to_max_age(7),
    "KITSESSION_MAX_AGE": days_to_max_age(30),
    # A session's cookie ends with the browser unless "Keep me signed in" was ticked at
    # login (auth.start_user_session sets session.permanent for it), as Flask's
    # non-permanent sessions do; anonymous sessions (a login form's CSRF token) too.
    "SESSION_PERMANENT": False,
    "TEMPLATES_AUTO_RELOAD": False,
    # The JSON API (api.py) takes its session from Authorization: Bearer <token>.
    "KITSESSION_BEARER": True,
}

#: Served over HTTPS: a Secure cookie with the ``__Host-`` prefix (Path=/, no Domain, Secure),
#: so no sibling subdomain or deeper path can plant a cookie the browser sends first.
HTTPS_SETTINGS: dict[str, Any] = {"KITSESSION_SECURE": True, "KITSESSION_NAME": "__Host-session"}

SECRET_KEY_FILE = "secret_key"
DATABASE_FILE = "kitsession-example.sqlite3"


def load_config(app: Flask, config: Mapping[str, Any] | None) -> None:
    """Fill ``app.config``: :data:`DEFAULTS`, then the environment, then ``config``.

    Sets ``SECRET_KEY``, ``EXAMPLE_DATABASE`` (path of the SQLite file) and,
    when the environment names one, ``KITSESSION_STORE``.
    """
    app.config.update(DEFAULTS)
    if os.environ.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
    app.config["EXAMPLE_DATABASE"] = os.environ.get("KITSESSION_EXAMPLE_DB") or os.path.join(
        app.instance_path, DATABASE_FILE
    )
    if os.environ.get("KITSESSION_STORE"):
        app.config["KITSESSION_STORE"] = os.environ["KITSESSION_STORE"]
    if os.environ.get("KITSESSION_EXAMPLE_HTTPS") == "1":
        app.config.update(HTTPS_SETTINGS)
    if config:
        app.config.update(config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = persistent_secret_key(Path(app.instance_path) / SECRET_KEY_FILE)


def persistent_secret_key(path: Path) -> str:
    """The key stored at ``path``; a new random one is written there (mode 0600) if none is.

    A key that changed at every start would log every browser out at every restart.
    """
    try:
        key = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        key = ""
    if key:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    # O_EXCL: if two processes start at once, one writes and the other reads its key.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(key + "\n")
    return key
