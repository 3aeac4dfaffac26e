"""kitsession-wsgi: server-side cookie sessions for Flask and any WSGI app.

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._device import Device
from .errors import (
    ConfigurationError,
    InvalidUserId,
    KitSessionError,
    SchemaMismatch,
    SessionConflict,
    SessionDataError,
    StoreUnavailable,
    TablesMissing,
)
from .manager import SessionManager, days_to_max_age, session_key
from .serialization import JSONSerializer, SessionSerializationError
from .session import USER_ID_MAX_BYTES, Session, SessionData
from .stores.base import SessionRecord, SessionStore, SetResult
from .stores.memory import MemoryStore

__version__ = "0.3.0"

__all__ = [
    "ConfigurationError",
    "Device",
    "InvalidUserId",
    "JSONSerializer",
    "KitSessionError",
    "MemoryStore",
    "SchemaMismatch",
    "Session",
    "SessionConflict",
    "SessionData",
    "SessionDataError",
    "SessionManager",
    "SessionRecord",
    "SessionSerializationError",
    "SessionStore",
    "SetResult",
    "StoreUnavailable",
    "TablesMissing",
    "USER_ID_MAX_BYTES",
    "days_to_max_age",
    "session_key",
]
