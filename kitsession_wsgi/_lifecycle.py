"""One request's session, from first use to the response: the lifecycle both adapters share.

The WSGI middleware (:class:`~kitsession_wsgi.wsgi.RequestSession`) and the Flask
extension (``flask.session``) only translate: an environ or a Flask request in,
headers out.  What happens to the session in between is written here, once:

* it is loaded on first use (a request that never touches it costs nothing);
* a login (:meth:`RequestLifecycle.login`) replaces it with a fresh session, kept only
  if the response succeeds (:meth:`RequestLifecycle.settle`), the previous one restored
  otherwise; a logout (:meth:`RequestLifecycle.logout`) removes it only on success;
* at the response it is committed, or, for a 5xx or an exception, only its locks are
  freed (:meth:`RequestLifecycle.finish`, :meth:`RequestLifecycle.release`);
* an adapter's own view of the data (Flask's ``session[...]``) reads and writes it
  through :meth:`RequestLifecycle.data` / :meth:`RequestLifecycle.writable`, and asks
  the one "may have changed" rule (:meth:`RequestLifecycle.may_have_changed`).

It drives the :class:`~kitsession_wsgi.SessionManager` through its public methods only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import _process_local
from ._device import recorded_device
from .session import Session
from .stores.base import UserId

if TYPE_CHECKING:
    from ._session_cookie import RefreshFacts
    from .manager import SessionManager

__all__ = ["RequestLifecycle"]


class RequestLifecycle:
    """The session side of one request, for an adapter.

    :param manager: the :class:`~kitsession_wsgi.SessionManager` of the request.
    :param source: what :meth:`~kitsession_wsgi.SessionManager.initialize_session`
        reads (the WSGI environ).
    :param on_new: asked for a session when the request's own is new (Flask's opt-in
        move of a Flask-Session session); ``None`` or its ``None`` keeps the new one.
    """

    __slots__ = ("manager", "source", "on_new", "_session", "_previous", "_login_pending", "_logout_pending")

    def __init__(self, manager: SessionManager, source: Any,
                 on_new: Callable[[], Session | None] | None = None) -> None:
        self.manager = manager
        self.source = source
        self.on_new = on_new
        self._session: Session | None = None
        self._previous: Session | None = None
        # login() / logout(): decided by settle(), against the response's outcome
        self._login_pending = False
        self._logout_pending = False
        store = manager.store
        if store.process_local and _process_local.due:  # a MemoryStore under several processes?
            _process_local.check(store, source)

    # -- the session ------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The request's :class:`~kitsession_wsgi.Session` (loaded on first use).

        :raises StoreUnavailable: the store cannot be reached.
        """
        session = self._session
        if session is None:
            session = self._session = self.manager.initialize_session(self.source)
            if session.is_new and self.on_new is not None:
                session = self._session = self.on_new() or session
        return session

    @property
    def loaded(self) -> bool:
        """Whether the request's session was loaded (the application touched it)."""
        return self._session is not None

    @property
    def current(self) -> Session | None:
        """The request's session if it was loaded, without loading it."""
        return self._session

    @property
    def previous(self) -> Session | None:
        """The session a :meth:`new_session` or :meth:`replace` replaced, until it is restored."""
        return self._previous

    def new_session(self, user_id: UserId | None = None, data: dict[str, Any] | None = None) -> Session:
        """Replace the session with a fresh one that replaces it when committed (a new id on save)."""
        previous = self.session
        self.replace(self.manager.new_session(previous, user_id=user_id, data=data))
        assert self._session is not None
        return self._session

    def replace(self, session: Session) -> None:
        """Make ``session`` the request's session; the one it replaces can be restored."""
        self._previous = self._session
        self._session = session

    def restore(self) -> None:
        """Undo :meth:`new_session` / :meth:`replace`: the previous session is the request's again."""
        self._login_pending = False
        if self._previous is not None:
            self._session = self._previous
            self._previous = None

    # -- login and logout, decided by the response ------------------------------------

    def login(self, user_id: UserId | None = None, data: dict[str, Any] | None = None) -> Session:
        """A fresh session (:meth:`new_session`) kept only if :meth:`settle` says the response succeeded."""
        session = self.new_session(user_id=user_id, data=data)
        self._login_pending = True
        return session

    def logout(self) -> None:
        """Remove the session (:meth:`delete`) when :meth:`settle` says the response succeeded."""
        self._logout_pending = True

    def cancel_logout(self) -> None:
        """Forget a :meth:`logout` not settled yet (the view failed)."""
        self._logout_pending = False

    def settle(self, succeeded: bool) -> None:
        """Apply a pending :meth:`login` (kept, or the previous session restored) and :meth:`logout`."""
        if not (self._login_pending or self._logout_pending):
            return
        if self._login_pending and not succeeded:
            self.restore()
        self._login_pending = False
        if self._logout_pending:
            self._logout_pending = False
            if succeeded:
                self.delete()

    def delete(self) -> bool:
        """Remove the session from the store now; its cookie is cleared on the response.

        :returns: ``True`` when a stored record was removed.
        """
        return self.manager.remove_session(self.session)

    def sign_out(self, carry: Iterable[str] = ()) -> None:
        """Remove the session now and go on with a fresh anonymous one that clears the cookie.

        ``carry`` names data keys the fresh session keeps (Flask's flashed messages,
        so "You have been logged out" still shows); a header session's successor is a
        header session too, so it gets no cookie, not even a clearing one.
        """
        session = self.session
        kept = {key: session._data[key] for key in carry if session._data.get(key)}
        self.manager.remove_session(session)
        after = Session._anonymous(transport=session._transport, clear_cookie=True)
        if kept:
            after.data = kept
        self.replace(after)

    def lock(self) -> Session:
        """Take the session's lock and reload it (:meth:`~kitsession_wsgi.SessionManager.lock_session`)."""
        return self.manager.lock_session(self.session)

    # -- the response -----------------------------------------------------------------

    def commit(self) -> str | None:
        """Persist the session, if it was loaded; the ``Set-Cookie`` value, if one is due."""
        session = self._session
        if session is None:
            return None
        if session.is_new:
            # A request creates or logs in this session: record the browser it came from
            # (a request that names neither agent nor address leaves nothing to record).
            device = recorded_device(self.source, self.manager.record_ip)
            if device != ("", None):
                session._records_device(device)
        return self.manager.commit(session)

    def finish(self, persist: bool) -> str | None:
        """At the response: :meth:`commit` (``persist``) or only :meth:`release` (a 5xx, an exception)."""
        if persist:
            return self.commit()
        self.release()
        return None

    def release(self) -> None:
        """Free any session lock this request holds (nothing is persisted); safe to call twice."""
        for session in (self._session, self._previous):
            if session is not None and session._lock_token is not None:
                self.manager.release(session)

    def holds_lock(self) -> bool:
        """Whether the request's session holds its lock (freed by :meth:`commit` or :meth:`release`)."""
        return self._session is not None and self._session._lock_token is not None

    @property
    def cookie_allowed(self) -> bool:
        """Whether this response may carry a session ``Set-Cookie`` at all.

        Not when the request's session travels by the header transport (read from
        a bearer token, or handed out by ``session_token()``): a header session
        never gets a cookie identity, whatever an adapter's own cookie rules (Flask's
        ``permanent``, ``SESSION_REFRESH_EACH_REQUEST``) would send.
        """
        return self._session is None or self._session._transport != "header"

    def bearer_headers(self) -> list[tuple[str, str]]:
        """:meth:`~kitsession_wsgi.SessionManager.bearer_headers` for the loaded session (``[]`` if none)."""
        if self._session is None or not self.manager.bearer:
            return []
        return self.manager.bearer_headers(self._session)

    # -- re-sending the cookie of a session the request never touched ---------------

    def refresh_facts(self) -> RefreshFacts | None:
        """:meth:`~kitsession_wsgi.SessionManager.refresh_facts` for this request (no store call)."""
        return self.manager.refresh_facts(self.source)

    def remember_refresh_facts(self, note: Any = None) -> None:
        """:meth:`~kitsession_wsgi.SessionManager.remember_refresh_facts` for the loaded session."""
        if self._session is not None:
            self.manager.remember_refresh_facts(self.source, self._session, note)

    def forget_refresh_facts(self) -> None:
        """:meth:`~kitsession_wsgi.SessionManager.forget_refresh_facts` for this request."""
        self.manager.forget_refresh_facts(self.source)

    # -- an adapter's own view of the data --------------------------------------------

    @property
    def data(self) -> dict[str, Any]:
        """The session's data dict as it is (loaded on first use).

        Reading it notes nothing: an adapter that hands out a value that can be
        changed in place (a list, a dict) calls :meth:`note_changed`.
        """
        return self.session._data

    def writable(self) -> dict[str, Any]:
        """The session's data dict, for writing: the session may have changed."""
        session = self.session
        session._note_data_touched()
        return session._data

    def note_changed(self) -> None:
        """The data was handed out for writing (or the adapter was told it changed)."""
        self.session._note_data_touched()

    def may_have_changed(self) -> bool:
        """Whether the data may differ from what was loaded: the one rule, the one a commit asks
        before it serialises (see :class:`~kitsession_wsgi.SessionData`); ``False`` if not loaded."""
        return self._session is not None and self._session._maybe_changed()

    # -- changes after the commit (a body streamed while it still runs) ---------------

    def watch_late_changes(self) -> None:
        """The session was committed while application code still runs: from now on
        :meth:`late_changes` names what changes (the commit's flags are reset)."""
        if self._session is not None:
            # Nothing else commits this session any more: these flags now mean
            # "changed since the commit", which makes the final check free when
            # the body leaves the session alone.
            self._session._forget_changes()

    def late_changes(self) -> list[str]:
        """The data keys (``repr``) and ``"the user id"`` changed since :meth:`watch_late_changes`."""
        session = self._session
        if session is None or session._destroyed:
            return []
        changed: list[str] = []
        if session._maybe_changed():
            serializer = self.manager.serializer
            try:
                stored = serializer.loads(session._loaded_text)
            except ValueError:
                stored = {}
            stored = stored if isinstance(stored, dict) else {}
            current = dict(dict.items(session._data))
            for key in [*current, *(key for key in stored if key not in current)]:
                try:
                    same = key in current and key in stored and (
                        serializer.dumps({key: current[key]}) == serializer.dumps({key: stored[key]})
                    )
                except (TypeError, ValueError):
                    same = False  # not serialisable: certainly not what was stored
                if not same:
                    changed.append(repr(key))
        if session._user_id != session._loaded_user_id:
            changed.append("the user id")
        return changed
