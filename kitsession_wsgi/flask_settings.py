"""Importable from here as before: :mod:`kitsession_wsgi.flask.settings` holds it."""
from .flask.settings import *  # noqa: F403
