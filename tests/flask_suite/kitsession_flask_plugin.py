"""pytest plugin: every Flask app the run creates gets ``KitSession(app, store=MemoryStore())``.

Loaded by ``tests/test_flask_suite.py`` into a pytest run over the test suite of the installed
Flask's sdist (``-p kitsession_flask_plugin``).  No options are passed: Flask's own settings are
the configuration, so Flask's tests check that KitSession honours them.  With
``KITSESSION_FLASK_SUITE=baseline`` it installs nothing (the same run without KitSession, so
failures that come from the environment are told apart from KitSession's).

An app whose class brings its own ``session_interface`` (a subclass of Flask's) keeps it: such
a test is about that interface, not about the one KitSession installs.
"""

from __future__ import annotations

import os
import typing as t

import _pytest.compat
import _pytest.monkeypatch
import flask

from kitsession_wsgi import MemoryStore
from kitsession_wsgi.flask import KitSession

if not hasattr(_pytest.monkeypatch, "notset"):
    # Flask's conftest predates pytest 9, which dropped this alias; nothing about sessions.
    _pytest.monkeypatch.notset = _pytest.compat.NOTSET  # type: ignore[attr-defined]

_original_init = flask.Flask.__init__
_default_interface = flask.Flask.session_interface


def _init_with_kitsession(self: flask.Flask, *args: t.Any, **kwargs: t.Any) -> None:
    _original_init(self, *args, **kwargs)
    if type(self).session_interface is _default_interface:
        KitSession(self, store=MemoryStore())


def pytest_configure(config: t.Any) -> None:
    if os.environ.get("KITSESSION_FLASK_SUITE") != "baseline":
        flask.Flask.__init__ = _init_with_kitsession  # type: ignore[method-assign]


def pytest_unconfigure(config: t.Any) -> None:
    flask.Flask.__init__ = _original_init  # type: ignore[method-assign]
