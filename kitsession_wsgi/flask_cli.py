"""Importable from here as before: :mod:`kitsession_wsgi.flask.cli` holds it."""
from .flask.cli import *  # noqa: F403
