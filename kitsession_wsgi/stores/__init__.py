"""Session stores.  Each optional driver is imported only by its own package:
``kitsession_wsgi.stores.peewee``, ``.memcached``, ``.redis``."""

from __future__ import annotations

from .base import SessionRecord, SessionStore, SetResult, UserId
from .memory import MemoryStore

__all__ = ["MemoryStore", "SessionRecord", "SessionStore", "SetResult", "UserId"]
