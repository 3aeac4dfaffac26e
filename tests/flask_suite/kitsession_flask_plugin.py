"""pytest plugin: every Flask app the run creates gets ``KitSession(app, store=MemoryStore())``.

Loaded by ``tests/test_flask_suite.py`` into a pytest run over the test suite of the installed
Flask's sdist (``-p kitsession_flask_plugin``).  No options are passed: Flask's own settings are
the configuration, so Flask's tests check that KitSession honours them.  With
``KITSESSION_FLASK_SUITE=baseline`` it installs nothing (the same run without KitSession, so
failures that come from the environment are told apart from KitSession's).  With
``KITSESSION_FLASK_SUITE_COUNT`` set to a path, the number of apps given KitSession is written
there at the end of the run, so the caller can tell that the substitution took place.

An app whose class brings its own ``session_interface`` (a subclass of Flask's) keeps it: such
a test is about that interface, not about the one KitSession installs.
"""

from __future__ import annotations

import os
import typing as t

import _pytest.compat
import _pytest.monkeypatch
import flask

import kitsession_wsgi
from kitsession_wsgi import MemoryStore
from kitsession_wsgi.flask import KitSession

if not hasattr(_pytest.monkeypatch, "notset"):
    # Flask's conftest predates pytest 9, which dropped this alias; nothing about sessions.
    _pytest.monkeypatch.notset = _pytest.compat.NOTSET  # type: ignore[attr-defined]

_original_init = flask.Flask.__init__
_default_interface = flask.Flask.session_interface
_apps_with_kitsession = 0


def _init_with_kitsession(self: flask.Flask, *args: t.Any, **kwargs: t.Any) -> None:
    global _apps_with_kitsession
    _original_init(self, *args, **kwargs)
    if type(self).session_interface is _default_interface:
        KitSession(self, store=MemoryStore())
        _apps_with_kitsession += 1


def pytest_report_header(config: t.Any) -> str:
    return f"kitsession_flask_plugin: {os.environ.get('KITSESSION_FLASK_SUITE')}, kitsession_wsgi from {kitsession_wsgi.__file__}"


def pytest_configure(config: t.Any) -> None:
    if os.environ.get("KITSESSION_FLASK_SUITE") != "baseline":
        flask.Flask.__init__ = _init_with_kitsession  # type: ignore[method-assign]


def pytest_unconfigure(config: t.Any) -> None:
    flask.Flask.__init__ = _original_init  # type: ignore[method-assign]
    count_file = os.environ.get("KITSESSION_FLASK_SUITE_COUNT")
    if count_file:
        with open(count_file, "w", encoding="utf-8") as out:
            out.write(str(_apps_with_kitsession))
