"""Per-session locks (``lock=True``, ``lock_session``): take one, waiting, and free it.

A lock serialises the requests of one session for a read-modify-write of one key;
the store holds it (``acquire_lock`` / ``release_lock``) with a time to live, so a
holder that died frees it by itself.
"""

from __future__ import annotations

import secrets
import time

from ._options import SessionOptions
from .errors import SessionConflict
from .session import Session

__all__ = ["SessionLocks"]


class SessionLocks:
    """Takes and frees the store's session locks, with the options' timeout and time to live."""

    def __init__(self, options: SessionOptions) -> None:
        self.options = options

    def acquire(self, key: str) -> str:
        """Take the store's lock of session ``key``, waiting up to ``lock_timeout``; the lock token.

        :raises SessionConflict: the lock stayed taken for ``lock_timeout``.
        """
        options = self.options
        token = secrets.token_hex(16)
        give_up = time.monotonic() + options.lock_timeout
        pause = 0.002
        while not options.store.acquire_lock(key, token, options.lock_ttl):
            if time.monotonic() >= give_up:
                raise SessionConflict(
                    f"the session stayed locked by another request for {options.lock_timeout:g}s", handle=key
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        return token

    def release(self, session: Session) -> None:
        """Free the session's lock if this request holds it; safe to call twice."""
        token = session._lock_token
        if token is not None and session.handle is not None:
            session._locked(None)
            self.options.store.release_lock(session.handle, token)

    def release_key(self, key: str, token: str) -> None:
        """Free the lock ``token`` of session ``key`` (a load that found nothing to serve)."""
        self.options.store.release_lock(key, token)
