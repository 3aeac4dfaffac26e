"""Storage keys: the digest a session id is stored under, and the keys of the core's markers.

Stores and logs only ever see digests, never a cookie id.  A marker key is the
digest of a text no cookie id maps to (it starts ``kitsession:``), so no cookie
can name a marker and no store needs a second keyspace for them.
"""

from __future__ import annotations

import base64
import hashlib

from .stores.base import UserId, user_index_key

__all__ = ["marker_key", "predecessor_key", "revocation_key", "session_key"]


def session_key(session_id: str) -> str:
    """The storage key of a session id: unpadded URL-safe base64 of its SHA-256.

    Stores and logs only ever see this digest; it cannot be turned back into a
    cookie.  It doubles as the public :attr:`Session.handle`.
    """
    digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def marker_key(handle: str) -> str:
    """Where the "replaced" (or "removed") marker of the session ``handle`` is kept."""
    return session_key("kitsession:replaced:" + handle)


def predecessor_key(handle: str) -> str:
    """Where the session ``handle`` names the id it replaced with a grace period (still live)."""
    return session_key("kitsession:graced:" + handle)


def revocation_key(user_id: UserId) -> str:
    """Where the revocation marker of ``user_id`` is kept (``5`` and ``"5"`` are different users).

    The user is written with the stores' user tag (``i:5``, ``s:alice``).
    """
    return session_key("kitsession:revoked:" + user_index_key(user_id))
