"""``flask kitsession ...``: the CLI, whose commands live in :mod:`kitsession_wsgi.flask_cli`."""
from ..flask_cli import *  # noqa: F403
