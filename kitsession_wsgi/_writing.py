"""Writing sessions: what a commit writes, versioned saves merged on conflict,
insert-only creation, expiry touches, and the retirement of replaced ids.

Part of :class:`~kitsession_wsgi.SessionManager`.  The store contract it relies
on: ``create`` is insert-only, ``set`` is update-only and versioned, so a
session another request removed is never brought back by a slower one.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from . import signals
from ._lifetime import REPLACED_DATA, REPLACED_MARKER_SECONDS, deadline, marker_key, readable
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
        """Persist what the request changed; the ``Set-Cookie`` value to send, if any."""
        manager = self.manager
        if session._destroyed:
            return manager.remove_session_cookie() if session._clear_cookie else None
        if session.is_new:
            if not session._data and session._user_id is None:
                return manager.remove_session_cookie() if session._clear_cookie else None
            self.save(session)
        elif session._maybe_changed() and (text := manager.serializer.dumps(session._data)) != session._loaded_text:
            if not session._user_id_explicit:
                self._follow_data_user(session)
            # Saved (merged) even when emptied, so a concurrent request's keys survive.
            self.save(session, text)
            if not session._destroyed and not session._data and session._user_id is None:
                # Emptied (Flask's session.clear() logout idiom): nothing left to keep.
                manager.remove_session(session)
        elif session._user_id != session._loaded_user_id:
            self.save(session)
        elif manager.touch_interval is not None:
            self._touch(session)
        if session._destroyed:
            return manager.remove_session_cookie() if session._clear_cookie else None
        if session._send_cookie:
            session._send_cookie = False
            return manager.set_session_cookie(session)
        return None

    def _follow_data_user(self, session: Session) -> None:
        """Apply svelte-kit-session's user rule to data changed in place.

        ``data["id"] = 5`` links the session to user 5; data that named a user
        and no longer does (or was emptied, as ``flask.session.clear()`` does)
        ends the link, so clearing the session logs the user out.
        """
        derived = user_id_from_data(session._data)
        if derived is not None:
            session._user_id = derived
        elif not session._data or user_id_from_data(self._loads_object(session._loaded_text)) is not None:
            session._user_id = None

    def _touch(self, session: Session) -> None:
        manager = self.manager
        now = manager.clock()
        new_deadline = deadline(session.created_at, now, manager.max_age, manager.idle_timeout)
        assert manager.touch_interval is not None
        if new_deadline - session.expires_at < manager.touch_interval or session.handle is None:
            return
        if manager.store.touch(session.handle, now, new_deadline):
            session.updated_at = now
            session.expires_at = new_deadline
            if manager.rolling:
                session._send_cookie = True
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
                session._loaded_text = text
                session._loaded_user_id = user_id
                session._user_id = user_id
                session._version = record.version
                session.updated_at = now
                session.expires_at = record.expires_at
                if manager.rolling:
                    session._send_cookie = True
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
            merged = self._loads_object(current.data)
            merged.update(changes.updated)
            for key in changes.deleted:
                merged.pop(key, None)
            user_id = changes.user_id if changes.user_id_changed else current.user_id
            text = self.serialize(merged)
            session._data = merged
        raise SessionConflict(
            f"the session kept changing under this request ({manager.merge_retries} merges)", handle=session.handle
        )

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
        """Store ``session`` under a new id (insert-only, retried on a taken id) and mark its cookie due."""
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
        session.id = session_id
        session.handle = key
        session.created_at = created_at
        session.updated_at = now
        session.expires_at = record.expires_at
        session.is_new = False
        session._loaded_text = text
        session._loaded_user_id = user_id
        session._version = 1
        session._send_cookie = True
        session._clear_cookie = False
        if announce:
            signals.created.send(manager, session=session)
        old = session._replaces
        session._replaces = None
        if old is not None and old.handle is not None and not old._destroyed:
            self.mark_replaced(old.handle)
            old._destroyed = True
            manager.release(old)
            signals.regenerated.send(manager, session=session, previous_handle=old.handle)

    # -- ends -------------------------------------------------------------------------

    def vanished(self, session: Session) -> None:
        """The session was removed by another request while this one ran.

        It stays removed, and this response sends no cookie: the request that
        removed it (a logout, or a login that replaced it) already answered
        with the right one, and a clearing cookie arriving later would sign
        the browser out of the session a concurrent login just gave it.
        """
        session._destroyed = True
        session._clear_cookie = False
        session._send_cookie = False

    def mark_destroyed(self, session: Session) -> None:
        session._destroyed = True
        session._clear_cookie = True
        session._send_cookie = False

    def mark_replaced(self, key: str) -> bool:
        """Remove the session ``key``, leaving a "replaced" marker for it; ``False`` if it was gone.

        The marker lives under a key of its own, so nothing done through the
        old id (a save, a touch, a lock) can reach or extend it.  It holds no
        data and no user and expires after ``REPLACED_MARKER_SECONDS`` (stores
        with TTLs drop it then, ``purge_expired`` removes it from SQL).  It is
        written before the session is removed, so no request in between finds
        neither.
        """
        manager = self.manager
        now = manager.clock()
        manager.store.create(SessionRecord(key=marker_key(key), data=REPLACED_DATA, user_id=None, created_at=now,
                                           updated_at=now, expires_at=now + REPLACED_MARKER_SECONDS, version=1))
        return manager.store.delete(key)

    def retire(self, record: SessionRecord, grace: float) -> bool:
        """End an id replaced by :meth:`~kitsession_wsgi.SessionManager.regenerate`: now, or after ``grace`` seconds.

        A grace record's lifetime is capped by moving its ``created_at``, so no
        save or touch through the old id can ever extend it.  ``False`` when
        another request removed it first.
        """
        if grace <= 0:
            return self.mark_replaced(record.key)
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
