"""Writing sessions: what a commit writes, versioned saves merged on conflict,
insert-only creation, expiry touches, and when a session moves to a new id.

The store contract it relies on: ``create`` is insert-only, ``set`` is update-only
and versioned, so a session another request removed is never brought back by a
slower one.  The move itself (insert, retire the old id, check for a removal that
ran meanwhile: rule 9 in docs/design.rst) is :mod:`kitsession_wsgi._lineage`.
"""

from __future__ import annotations

import random
import time
from typing import Any, NamedTuple

from ._device import split_device, stored_text
from ._events import SessionEvents
from ._expiry import deadline, is_live
from ._lineage import Lineage
from ._loader import readable
from ._locks import SessionLocks
from ._options import SessionOptions
from ._remover import SessionRemover
from ._session_cookie import SessionCookie
from ._session_limit import SessionLimit
from .errors import SessionConflict, SessionDataError
from .session import Session, user_id_from_data
from .stores.base import SessionRecord, SetResult, UserId

__all__ = ["ChangeSet", "SessionWriter"]


class ChangeSet(NamedTuple):
    """What one request changed, against what it loaded: re-applied on a merge."""

    updated: dict[str, Any]
    deleted: list[str]
    user_id_changed: bool
    user_id: UserId | None


class SessionWriter:
    """Writes sessions to ``options.store``: commits, saves, merges, touches, and moves.

    Its collaborators: ``cookie`` builds the ``Set-Cookie`` values, ``locks`` frees a
    committed session's lock, ``lineage`` stores sessions under fresh ids and moves them,
    ``remover`` ends a session a commit emptied; ``events`` sends the ``regenerated``
    signal; ``limit`` keeps ``max_sessions_per_user`` after every save that links a
    session to its user.
    """

    def __init__(self, options: SessionOptions, cookie: SessionCookie, locks: SessionLocks, lineage: Lineage,
                 remover: SessionRemover, events: SessionEvents, limit: SessionLimit) -> None:
        self.options = options
        self.cookie = cookie
        self.locks = locks
        self.lineage = lineage
        self.remover = remover
        self.events = events
        self.limit = limit

    # -- the commit decision ----------------------------------------------------------

    def commit(self, session: Session) -> str | None:
        """:meth:`~kitsession_wsgi.SessionManager.commit`: persist, free the lock, pick the transport."""
        # A new id or a re-signed token is due before the write; a rolling refresh (same token) is not.
        token_changes = session._send_cookie
        id_before = session.id
        if session._lock_token is None:
            set_cookie = self._persist(session)
        else:
            try:
                set_cookie = self._persist(session)
            finally:
                self.locks.release(session)
        if session._transport != "header":
            return set_cookie
        # The header transport never sets or clears a cookie (the request may carry a
        # browser's cookie that is not ours to touch): a new token for the session
        # goes out in the Session-Token response header instead (bearer_headers).
        if set_cookie is not None and not session._destroyed and (token_changes or session.id != id_before):
            session._token_is_due(True)
        return None

    def _persist(self, session: Session) -> str | None:
        """Persist what the request changed; the ``Set-Cookie`` value to send, if any."""
        options = self.options
        if session._destroyed:
            return self.cookie.removal() if session._clear_cookie else None
        if session.is_new:
            if not session._data and session._user_id is None:
                return self.cookie.removal() if session._clear_cookie else None
            self.save(session)
        elif (text := session._differs_from_stored(options.serializer.dumps)) is not None:
            if not session._user_id_explicit:
                self._follow_data_user(session)
            if self._rotates(session):
                self.rotate(session, self._checked_size(text))
            else:
                # Saved (merged) even when emptied, so a concurrent request's keys survive.
                self.save(session, text)
            if not session._destroyed and not session._data and session._user_id is None:
                # Emptied (Flask's session.clear() logout idiom): nothing left to keep.
                self.remover.remove(session)
        elif session._user_changed():
            if self._rotates(session):
                self.rotate(session, self.serialize(session._data))
            else:
                self.save(session)
        elif options.touch_interval is not None:
            self._touch(session)
        if session._destroyed:
            return self.cookie.removal() if session._clear_cookie else None
        # Read first: most commits send no cookie, and then there is no flag to clear.
        if session._send_cookie and session._cookie_due():
            return self.cookie.set_cookie(session)
        return None

    def token_session_id(self, session: Session) -> str:
        """:meth:`~kitsession_wsgi.SessionManager.session_token`'s checks, and its save of a
        new session: the id the token signs.  The session becomes a header session."""
        if session._destroyed:
            raise ValueError("this session was removed: it has no token")
        if session.is_new:
            if not session._data and session._user_id is None:
                raise ValueError("an empty session is never stored: give it data or a user before its token")
            previous = session._replaces
            if previous is not None and previous._transport != "header":
                session._replacing(None)
            session._carried_by("header")
            self.save(session)
        elif session._transport == "cookie":
            raise ValueError("this session came from its HttpOnly cookie; mint a token for a new session instead")
        if session.id is None:
            raise ValueError("this session was listed from the store: it has no id, so no token")
        session._carried_by("header")
        return session.id

    def differs_from_stored(self, session: Session) -> bool:
        """Whether the session's data or user differ from what the store holds for it."""
        return session._user_changed() or session._differs_from_stored(self.options.serializer.dumps) is not None

    def _rotates(self, session: Session) -> bool:
        """Whether this commit gives the session a new id: it gained a user, or changed user."""
        return (self.options.rotate_on_user_change and session._user_id is not None
                and session._user_id != session._loaded_user_id)

    def _follow_data_user(self, session: Session) -> None:
        """Apply svelte-kit-session's user rule to data changed in place.

        ``data["id"] = 5`` links the session to user 5; data that named a user
        and no longer does (or was emptied, as ``flask.session.clear()`` does)
        ends the link, so clearing the session logs the user out.
        """
        derived = user_id_from_data(session._data)
        if derived is not None:
            session._follow_user(derived)
        elif not session._data or user_id_from_data(self._loads_object(session._loaded_text), strict=False) is not None:
            session._follow_user(None)

    def _touch(self, session: Session) -> None:
        options = self.options
        now = options.clock()
        new_deadline = deadline(session.created_at, now, options.max_age, options.idle_timeout)
        assert options.touch_interval is not None
        if new_deadline - session.expires_at < options.touch_interval or session.handle is None:
            return
        if options.store.touch(session.handle, now, new_deadline):
            session._touched(now, new_deadline, send_cookie=options.rolling)
        else:
            session._vanished()

    # -- saving -----------------------------------------------------------------------

    def serialize(self, data: dict[str, Any]) -> str:
        return self._checked_size(self.options.serializer.dumps(data))

    def _checked_size(self, text: str) -> str:
        limit = self.options.max_data_bytes
        if len(text) * 4 > limit and len(text.encode("utf-8")) > limit:
            raise SessionDataError(
                f"session data is {len(text.encode('utf-8'))} bytes, more than max_data_bytes={limit}"
            )
        return text

    def save(self, session: Session, text: str | None = None) -> None:
        """Write the session: insert a new one, or a versioned update merged on conflict.

        ``text`` is the data already serialised by the caller, if it has it.
        """
        options = self.options
        text = self.serialize(session._data) if text is None else self._checked_size(text)
        now = options.clock()
        if session.is_new:
            if not session._user_id_explicit:
                # The user rule holds for new sessions however the data was set
                # (``data["user_id"] = 7`` in place as much as ``data = {...}``).
                derived = user_id_from_data(session._data)
                if derived is not None:
                    session._follow_user(derived)
            self.lineage.insert(session, text, now)
            if not session._destroyed:
                self._limit(session)
            return
        assert session.handle is not None
        expected = session._version
        user_id = session._user_id
        changes: ChangeSet | None = None
        for attempt in range(options.merge_retries + 1):
            record = SessionRecord(
                key=session.handle,
                data=stored_text(text, session._device),
                user_id=user_id,
                created_at=session.created_at,
                updated_at=now,
                expires_at=deadline(session.created_at, now, options.max_age, options.idle_timeout),
                version=expected + 1,
            )
            result = options.store.set(record, expected)
            if result is SetResult.SAVED:
                linked = user_id is not None and user_id != session._loaded_user_id
                session._stored(text, user_id, record.version, now, record.expires_at, send_cookie=options.rolling)
                if changes is not None:
                    self.events.conflict_merged(session)
                if linked:
                    self._limit(session)
                return
            if result is SetResult.MISSING:
                # Removed by another request (logout, revoke): it stays removed.
                session._vanished()
                return
            if options.on_conflict == "raise":
                raise SessionConflict("the session was changed by another request", handle=session.handle)
            if attempt >= 2:
                # Many writers on one session: step aside briefly (jittered, growing)
                # so one request is not starved by the others' faster saves.
                time.sleep(random.uniform(0, min(0.002 * attempt, 0.025)))
            current = options.store.get(session.handle)
            if current is None or now >= current.expires_at:
                session._vanished()
                return
            expected = current.version
            if options.on_conflict == "overwrite" and current.user_id == session._loaded_user_id:
                continue  # last write wins, for the data
            # Another request changed the user link meanwhile (a logout that popped it, a
            # login): even "overwrite" merges then, so no stale write brings a user back.
            if changes is None:
                # What THIS request changed, against what it loaded; computed once,
                # so later merges never mistake other requests' values for ours.
                changes = self._changes(session)
            merged = self._applied(changes, current)
            user_id = changes.user_id if changes.user_id_changed else current.user_id
            text = self.serialize(merged)
            session._merged(merged, user_id)
        raise SessionConflict(
            f"the session kept changing under this request ({options.merge_retries} merges)", handle=session.handle
        )

    def _limit(self, session: Session) -> None:
        """Keep ``max_sessions_per_user`` after a save linked ``session`` to its user."""
        if self.limit.enforce(session._user_id, session.handle):
            session._vanished()  # another of the user's sessions was active after it

    def _applied(self, changes: ChangeSet, current: SessionRecord) -> dict[str, Any]:
        """``current``'s data with this request's changes applied (a merge)."""
        merged = self._loads_object(split_device(current.data)[1])
        merged.update(changes.updated)
        for key in changes.deleted:
            merged.pop(key, None)
        return merged

    def _loads_object(self, text: str) -> dict[str, Any]:
        """Stored data as a dict; unreadable data reads as empty."""
        return readable(self.options.serializer, text) or {}

    def _changes(self, session: Session) -> ChangeSet:
        """The keys this request set or deleted, compared with what it loaded."""
        dumps = self.options.serializer.dumps
        original = self._loads_object(session._loaded_text)
        updated = {
            key: value
            for key, value in session._data.items()
            if key not in original or dumps({key: value}) != dumps({key: original[key]})
        }
        deleted = [key for key in original if key not in session._data]
        user_id_changed = session._user_id != session._loaded_user_id
        return ChangeSet(updated, deleted, user_id_changed, session._user_id)

    # -- moving a session to a new id (the lineage does the move) -----------------------

    def regenerate(self, session: Session, grace: float) -> None:
        """:meth:`~kitsession_wsgi.SessionManager.regenerate`: a move keeping the data and the user."""
        if session.is_new or session._destroyed:
            return
        old_key = session.handle
        assert old_key is not None
        if self.differs_from_stored(session):
            # Merge this request's changes first, so a concurrent save is not lost.
            self.save(session)
            if session._destroyed:
                return
        options = self.options
        current = options.store.get(old_key)
        device, text = (None, "") if current is None else split_device(current.data)
        data = None if current is None else readable(options.serializer, text)
        if current is None or data is None:
            session._vanished()
            return
        self.locks.release(session)
        if device is not None:
            session._records_device(device)
        if self.lineage.move(session, current, text, data, current.user_id, grace):
            self.events.regenerated(session=session, previous_handle=old_key)

    def rotate(self, session: Session, text: str) -> None:
        """Move a stored session whose user changed in this request to a new id (fixation defence).

        ``text`` is this request's data; if another request saved the session
        meanwhile, this request's changes are applied to what it saved.
        """
        options = self.options
        assert session.handle is not None
        current = options.store.get(session.handle)
        if current is None or not is_live(current, options.clock(), options.max_age):
            # Removed meanwhile (a logout): it stays removed, as a save would find it.
            session._vanished()
            return
        user_id = session._user_id
        data = session._data
        if current.version != session._version:
            data = self._applied(self._changes(session), current)
            text = self.serialize(data)
        previous_handle = session.handle
        self.locks.release(session)
        if self.lineage.move(session, current, text, data, user_id):
            self.events.regenerated(session=session, previous_handle=previous_handle)
            if user_id != current.user_id:
                self._limit(session)
