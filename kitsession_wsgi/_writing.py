"""Writing sessions: what a commit writes, versioned saves merged on conflict,
insert-only creation, expiry touches, and the retirement of replaced ids.

Part of :class:`~kitsession_wsgi.SessionManager`.  The store contract it relies
on: ``create`` is insert-only, ``set`` is update-only and versioned, so a
session another request removed is never brought back by a slower one.

Moving a session to a new id (a login that replaces a session, ``regenerate``, the
rotation when the session's user changes) inserts the new record, retires the old id,
then asks whether a removal ran meanwhile: why that order lets revocation win every
race is argued in ``_removal``.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from . import signals
from ._lifetime import REPLACED_MARKER_SECONDS, deadline, is_live, marker_key, readable, replaced_data
from ._session_cookie import session_key
from .errors import SessionConflict, SessionDataError
from .session import Session, user_id_from_data
from .stores.base import SessionRecord, SetResult, UserId

if TYPE_CHECKING:
    from .manager import SessionManager

#: A stored session whose id collides with a fresh one is astronomically rare;
#: a few retries cover a store whose ``create_id`` is weaker than the default.
CREATE_ATTEMPTS = 5


class ChangeSet(NamedTuple):
    """What one request changed, against what it loaded: re-applied on a merge."""

    updated: dict[str, Any]
    deleted: list[str]
    user_id_changed: bool
    user_id: UserId | None


class SessionWriter:
    """Writes the sessions of one :class:`~kitsession_wsgi.SessionManager`."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

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
                self.manager.release(session)
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
        manager = self.manager
        if session._destroyed:
            return manager.remove_session_cookie() if session._clear_cookie else None
        if session.is_new:
            if not session._data and session._user_id is None:
                return manager.remove_session_cookie() if session._clear_cookie else None
            self.save(session)
        elif (text := session._differs_from_stored(manager.serializer.dumps)) is not None:
            if not session._user_id_explicit:
                self._follow_data_user(session)
            if self._rotates(session):
                self.rotate(session, self._checked_size(text))
            else:
                # Saved (merged) even when emptied, so a concurrent request's keys survive.
                self.save(session, text)
            if not session._destroyed and not session._data and session._user_id is None:
                # Emptied (Flask's session.clear() logout idiom): nothing left to keep.
                manager.remove_session(session)
        elif session._user_changed():
            if self._rotates(session):
                self.rotate(session, self.serialize(session._data))
            else:
                self.save(session)
        elif manager.touch_interval is not None:
            self._touch(session)
        if session._destroyed:
            return manager.remove_session_cookie() if session._clear_cookie else None
        # Read first: most commits send no cookie, and then there is no flag to clear.
        if session._send_cookie and session._cookie_due():
            return manager.set_session_cookie(session)
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
        return session._user_changed() or session._differs_from_stored(self.manager.serializer.dumps) is not None

    def _rotates(self, session: Session) -> bool:
        """Whether this commit gives the session a new id: it gained a user, or changed user."""
        return (self.manager.rotate_on_user_change and session._user_id is not None
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
        manager = self.manager
        now = manager.clock()
        new_deadline = deadline(session.created_at, now, manager.max_age, manager.idle_timeout)
        assert manager.touch_interval is not None
        if new_deadline - session.expires_at < manager.touch_interval or session.handle is None:
            return
        if manager.store.touch(session.handle, now, new_deadline):
            session._touched(now, new_deadline, send_cookie=manager.rolling)
        else:
            self.vanished(session)

    # -- saving -----------------------------------------------------------------------

    def serialize(self, data: dict[str, Any]) -> str:
        return self._checked_size(self.manager.serializer.dumps(data))

    def _checked_size(self, text: str) -> str:
        limit = self.manager.max_data_bytes
        if len(text) * 4 > limit and len(text.encode("utf-8")) > limit:
            raise SessionDataError(
                f"session data is {len(text.encode('utf-8'))} bytes, more than max_data_bytes={limit}"
            )
        return text

    def save(self, session: Session, text: str | None = None) -> None:
        """Write the session: insert a new one, or a versioned update merged on conflict.

        ``text`` is the data already serialised by the caller, if it has it.
        """
        manager = self.manager
        text = self.serialize(session._data) if text is None else self._checked_size(text)
        now = manager.clock()
        if session.is_new:
            if not session._user_id_explicit:
                # The user rule holds for new sessions however the data was set
                # (``data["user_id"] = 7`` in place as much as ``data = {...}``).
                derived = user_id_from_data(session._data)
                if derived is not None:
                    session._follow_user(derived)
            self.insert(session, text, now)
            return
        assert session.handle is not None
        expected = session._version
        user_id = session._user_id
        changes: ChangeSet | None = None
        for attempt in range(manager.merge_retries + 1):
            record = SessionRecord(
                key=session.handle,
                data=text,
                user_id=user_id,
                created_at=session.created_at,
                updated_at=now,
                expires_at=deadline(session.created_at, now, manager.max_age, manager.idle_timeout),
                version=expected + 1,
            )
            result = manager.store.set(record, expected)
            if result is SetResult.SAVED:
                session._stored(text, user_id, record.version, now, record.expires_at, send_cookie=manager.rolling)
                return
            if result is SetResult.MISSING:
                # Removed by another request (logout, revoke): it stays removed.
                self.vanished(session)
                return
            if manager.on_conflict == "raise":
                raise SessionConflict("the session was changed by another request", handle=session.handle)
            if attempt >= 2:
                # Many writers on one session: step aside briefly (jittered, growing)
                # so one request is not starved by the others' faster saves.
                time.sleep(random.uniform(0, min(0.002 * attempt, 0.025)))
            current = manager.store.get(session.handle)
            if current is None or now >= current.expires_at:
                self.vanished(session)
                return
            expected = current.version
            if manager.on_conflict == "overwrite":
                continue
            if changes is None:
                # What THIS request changed, against what it loaded; computed once,
                # so later merges never mistake other requests' values for ours.
                changes = self._changes(session)
            merged = self._applied(changes, current)
            user_id = changes.user_id if changes.user_id_changed else current.user_id
            text = self.serialize(merged)
            session._merged(merged, user_id)
        raise SessionConflict(
            f"the session kept changing under this request ({manager.merge_retries} merges)", handle=session.handle
        )

    def _applied(self, changes: ChangeSet, current: SessionRecord) -> dict[str, Any]:
        """``current``'s data with this request's changes applied (a merge)."""
        merged = self._loads_object(current.data)
        merged.update(changes.updated)
        for key in changes.deleted:
            merged.pop(key, None)
        return merged

    def _loads_object(self, text: str) -> dict[str, Any]:
        """Stored data as a dict; unreadable data reads as empty."""
        return readable(self.manager.serializer, text) or {}

    def _changes(self, session: Session) -> ChangeSet:
        """The keys this request set or deleted, compared with what it loaded."""
        dumps = self.manager.serializer.dumps
        original = self._loads_object(session._loaded_text)
        updated = {
            key: value
            for key, value in session._data.items()
            if key not in original or dumps({key: value}) != dumps({key: original[key]})
        }
        deleted = [key for key in original if key not in session._data]
        user_id_changed = session._user_id != session._loaded_user_id
        return ChangeSet(updated, deleted, user_id_changed, session._user_id)

    def insert(self, session: Session, text: str, now: float, *, created_at: float | None = None,
               announce: bool = True) -> None:
        """Store ``session`` under a new id (insert-only) and mark its cookie due.

        A session that replaces another (``new_session(previous)``, the login path)
        is a move: see :meth:`move` for why the order below is safe.
        """
        old = session._take_replaced()
        if old is not None and (old.handle is None or old._destroyed):
            old = None
        self._create(session, text, now, created_at=created_at)
        if announce:
            signals.created.send(self.manager, session=session)
        if old is None:
            return
        assert old.handle is not None
        old._vanished()
        self.manager.release(old)
        retired = self.mark_replaced(old.handle, session)
        # An anonymous predecessor that vanished (evicted, expired, removed) leaves nothing to
        # revoke: the login stands.  A signed-in one removed meanwhile takes the login with it.
        if (not retired and old._loaded_user_id is not None) or (
            # the removal side of the race, and the argument: _removal
            self.manager._remover.revoked_since(old._loaded_user_id, old.created_at, old.handle, session)
        ):
            self._undo_move(session)
            return
        signals.regenerated.send(self.manager, session=session, previous_handle=old.handle)

    def _create(self, session: Session, text: str, now: float, *, created_at: float | None = None) -> None:
        """Insert a record for ``session`` under a fresh id (retried on a taken one)."""
        manager = self.manager
        user_id = session._user_id
        created_at = now if created_at is None else created_at
        for _attempt in range(CREATE_ATTEMPTS):
            session_id = manager.store.create_id()
            key = session_key(session_id)
            record = SessionRecord(
                key=key,
                data=text,
                user_id=user_id,
                created_at=created_at,
                updated_at=now,
                expires_at=deadline(created_at, now, manager.max_age, manager.idle_timeout),
                version=1,
            )
            if manager.store.create(record):
                break
        else:
            raise SessionConflict(f"store.create_id() returned taken ids {CREATE_ATTEMPTS} times")
        session._inserted(session_id=session_id, handle=key, text=text, created_at=created_at, updated_at=now,
                          expires_at=record.expires_at)

    # -- moving a session to a new id -------------------------------------------------

    def move(self, session: Session, current: SessionRecord, text: str, data: dict[str, Any],
             user_id: UserId | None, grace: float = 0) -> bool:
        """Give the stored session ``current`` a new id holding ``data`` (serialised: ``text``) and ``user_id``.

        The order (insert, retire, check) is argued in the module docstring.
        ``False``, with ``session`` ended and no cookie sent, when a concurrent
        removal got there first.
        """
        session._merged(data, user_id)
        self._create(session, text, self.manager.clock(), created_at=session.created_at)
        if not self.retire(current, grace, session) or (
            # the removal side of the race, and the argument: _removal
            self.manager._remover.revoked_since(current.user_id, current.created_at, current.key, session)
        ):
            self._undo_move(session)
            return False
        return True

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
        manager = self.manager
        current = manager.store.get(old_key)
        data = None if current is None else readable(manager.serializer, current.data)
        if current is None or data is None:
            self.vanished(session)
            return
        manager.release(session)
        if self.move(session, current, current.data, data, current.user_id, grace):
            signals.regenerated.send(manager, session=session, previous_handle=old_key)

    def rotate(self, session: Session, text: str) -> None:
        """Move a stored session whose user changed in this request to a new id (fixation defence).

        ``text`` is this request's data; if another request saved the session
        meanwhile, this request's changes are applied to what it saved.
        """
        manager = self.manager
        assert session.handle is not None
        current = manager.store.get(session.handle)
        if current is None or not is_live(current, manager.clock(), manager.max_age):
            # Removed meanwhile (a logout): it stays removed, as a save would find it.
            self.vanished(session)
            return
        user_id = session._user_id
        data = session._data
        if current.version != session._version:
            data = self._applied(self._changes(session), current)
            text = self.serialize(data)
        previous_handle = session.handle
        manager.release(session)
        if self.move(session, current, text, data, user_id):
            signals.regenerated.send(manager, session=session, previous_handle=previous_handle)

    def _undo_move(self, session: Session) -> None:
        """A removal won the race: the new record goes too, and no cookie is sent."""
        assert session.handle is not None
        self.manager.store.delete(session.handle)
        self.vanished(session)

    # -- ends -------------------------------------------------------------------------

    def vanished(self, session: Session) -> None:
        """The session was removed by another request while this one ran.

        It stays removed, and this response sends no cookie: the request that
        removed it (a logout, or a login that replaced it) already answered
        with the right one, and a clearing cookie arriving later would sign
        the browser out of the session a concurrent login just gave it.
        """
        session._vanished()

    def mark_replaced(self, key: str, successor: Session) -> bool:
        """Remove the session ``key``, leaving a "replaced" marker naming ``successor``; ``False`` if it was gone.

        The marker lives under a key of its own, so nothing done through the
        old id (a save, a touch, a lock) can reach or extend it.  It holds no
        data and no user and expires after ``REPLACED_MARKER_SECONDS`` (stores
        with TTLs drop it then, ``purge_expired`` removes it from SQL).  It is
        written before the session is removed, so no request in between finds
        neither, and a removal of the old id finds the successor through it.
        """
        if not self._write_marker(key, successor):
            return False  # a removal claimed the id first (remove_successors)
        return self.manager.store.delete(key)

    def _write_marker(self, key: str, successor: Session, grace: float = 0) -> bool:
        """Insert the "replaced" marker of ``key``; ``False`` if its slot is taken (a removal claimed it)."""
        assert successor.handle is not None
        now = self.manager.clock()
        return self.manager.store.create(SessionRecord(
            key=marker_key(key), data=replaced_data(successor.handle, successor._user_id, successor.created_at),
            user_id=None, created_at=now,
            updated_at=now, expires_at=now + grace + REPLACED_MARKER_SECONDS, version=1,
        ))

    def retire(self, record: SessionRecord, grace: float, successor: Session) -> bool:
        """End an id replaced by a move: now, or after ``grace`` seconds.

        A grace record's lifetime is capped by moving its ``created_at``, so no
        save or touch through the old id can ever extend it.  ``False`` when
        another request removed it first.
        """
        if grace <= 0:
            return self.mark_replaced(record.key, successor)
        if not self._write_marker(record.key, successor, grace):
            return False
        manager = self.manager
        now = manager.clock()
        end = min(now + grace, record.expires_at)
        for _attempt in range(manager.merge_retries + 1):
            result = manager.store.set(
                record.with_changes(created_at=end - manager.max_age, updated_at=now, expires_at=end,
                                    version=record.version + 1),
                record.version,
            )
            if result is SetResult.SAVED:
                return True
            if result is SetResult.MISSING:
                return False
            fresh = manager.store.get(record.key)
            if fresh is None:
                return False
            record = fresh
        raise SessionConflict("the session kept changing while its id was replaced", handle=record.key)
