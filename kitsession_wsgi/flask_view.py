"""Importable from here as before: :mod:`kitsession_wsgi.flask.view` holds it."""
from .flask.view import *  # noqa: F403
