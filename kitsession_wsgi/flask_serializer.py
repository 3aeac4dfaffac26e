"""Importable from here as before: :mod:`kitsession_wsgi.flask.serializer` holds it."""
from .flask.serializer import *  # noqa: F403
