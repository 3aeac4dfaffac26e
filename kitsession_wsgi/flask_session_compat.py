"""Importable from here as before: :mod:`kitsession_wsgi.flask.session_compat` holds it."""
from .flask.session_compat import *  # noqa: F403
