"""``flask.session`` under KitSession: :class:`FlaskSession`, a dict-like view of the request's session.

:mod:`kitsession_wsgi.flask` re-exports it.

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextvars
import logging
import typing as t
from collections.abc import Iterator

from flask import current_app
from flask.sessions import SessionMixin

from .._lifecycle import RequestLifecycle
from ..cookies import read_cookies
from ..session import Session, user_id_from_data

if t.TYPE_CHECKING:
    from .session_compat import FlaskSessionMigration
    from .settings import FlaskSettings
    from ..manager import SessionManager

__all__ = ["REQUEST_SESSION", "FlaskSession"]

logger = logging.getLogger("kitsession_wsgi")


#: ``FlaskSession._permanent_at_load`` before the session is loaded
_UNLOADED = object()
#: The request's :class:`FlaskSession`, set by ``open_session`` and restored by the teardown:
#: how the teardown and :func:`get_manager` find it without Flask's private request context.
REQUEST_SESSION: contextvars.ContextVar[FlaskSession | None] = contextvars.ContextVar(
    "kitsession_flask_session", default=None)


class FlaskSession(SessionMixin):
    """What ``flask.session`` is under KitSession: a dict-like view of the request's session.

    Loads the session on first use.  Top-level writes mark it changed; a read
    that hands out a mutable value (a list or dict) makes the save compare the
    serialised data, so nested in-place changes are saved too.
    ``permanent`` has Flask's meaning and is kept in the data as Flask keeps it
    (``"_permanent"``).  It also has the :class:`~kitsession_wsgi.Session` attributes of the
    request's session (``data``, ``user_id``, ``handle``, ``transport``, ...): it is what a
    ``with_new_session`` or ``with_delete_session`` view receives as ``session``, the same
    object as ``flask.session``.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       ``permanent`` is Flask's: a non-permanent session has a browser-session cookie.
    .. versionchanged:: 0.3
       The :class:`~kitsession_wsgi.Session` attributes; the decorators' ``session`` argument.
    """

    def __init__(self, manager: SessionManager, environ: dict[str, t.Any],
                 settings: FlaskSettings | None = None, migration: FlaskSessionMigration | None = None) -> None:
        #: the request's WSGI environ
        self.environ = environ
        #: the app's :class:`~kitsession_wsgi.flask.settings.FlaskSettings` for this request
        self.settings = settings
        self._migration = migration
        #: the request's :class:`~kitsession_wsgi._lifecycle.RequestLifecycle`, shared with the WSGI middleware
        self.lifecycle = RequestLifecycle(manager, environ, self._migrated if migration is not None else None)
        #: the raw ``"_permanent"`` value the session had when loaded (``_UNLOADED`` before)
        self._permanent_at_load: t.Any = _UNLOADED
        #: restores :data:`REQUEST_SESSION` when the request ends (set by ``open_session``)
        self.context_token: contextvars.Token[FlaskSession | None] | None = None
        self.accessed = False
        #: the loaded session whose user writes to the data do not change (the user rule is off)
        self._pinned: Session | None = None
        #: at load: its user, whether its data named a user, whether it had data
        self._user_at_load: t.Any = None
        self._named_at_load = False
        self._had_data = False

    # -- the core session -------------------------------------------------------------

    @property
    def core(self) -> Session:
        """The request's :class:`~kitsession_wsgi.Session` (loaded on first use)."""
        lifecycle = self.lifecycle
        core = lifecycle.current
        if core is None:
            core = lifecycle.session
            self.accessed = True
            data = lifecycle.data
            self._permanent_at_load = data.get("_permanent")
            if self.settings is not None and not self.settings.user_id_from_data:
                self._pin_user(core, data)
        return core

    def _pin_user(self, core: Session, data: dict[str, t.Any]) -> None:
        """Writes to the data no longer link a user: the user stays as loaded (an explicit set)."""
        self._pinned = core
        self._user_at_load = core.user_id
        self._named_at_load = user_id_from_data(data, strict=False) is not None
        self._had_data = bool(data)
        core.user_id = core.user_id

    def settle_user(self) -> None:
        """Before the commit, with the user rule off: data that no longer names the session's user
        (the key that named it removed, or the data emptied) still ends the link, as the core's
        rule does, so ``session.pop("user_id")`` logs out; nothing written to the data links one."""
        pinned = self._pinned
        lifecycle = self.lifecycle
        if pinned is None or lifecycle.current is not pinned or pinned.user_id is None:
            return
        if pinned.user_id != self._user_at_load or not lifecycle.may_have_changed():
            return
        data = lifecycle.data
        if (not data and self._had_data) or (self._named_at_load and user_id_from_data(data, strict=False) is None):
            pinned.user_id = None

    def _migrated(self) -> Session | None:
        """A Flask-Session session the cookie names, moved into a new KitSession session (opt-in)."""
        assert self._migration is not None
        header = self.environ.get("HTTP_COOKIE")
        if not isinstance(header, str):
            return None
        manager = self.lifecycle.manager
        data = self._migration.take(read_cookies(header, manager.name), current_app.secret_key)
        if data is None:
            return None
        logger.info("moved a Flask-Session session into KitSession")
        return manager.new_session(data=data)

    # -- the core session's attributes, for the argument of with_new_session / with_delete_session --

    @property
    def data(self) -> dict[str, t.Any]:
        """:attr:`Session.data <kitsession_wsgi.Session.data>` of the request's session."""
        return self.core.data

    @data.setter
    def data(self, value: t.Mapping[str, t.Any]) -> None:
        self.core.data = value

    @property
    def user_id(self) -> t.Any:
        """:attr:`Session.user_id <kitsession_wsgi.Session.user_id>` (settable: links the session to a user)."""
        return self.core.user_id

    @user_id.setter
    def user_id(self, value: t.Any) -> None:
        self.core.user_id = value

    @property
    def user(self) -> t.Any:
        """:attr:`Session.user <kitsession_wsgi.Session>`: the loaded user, if a user loader is registered."""
        return self.core.user

    @user.setter
    def user(self, value: t.Any) -> None:
        self.core.user = value

    @property
    def id(self) -> str | None:
        """The secret id of the request's session (``None`` until a new one is saved)."""
        return self.core.id

    @property
    def handle(self) -> str | None:
        """The public handle of the request's session."""
        return self.core.handle

    @property
    def is_new(self) -> bool:
        return self.core.is_new

    @property
    def created_at(self) -> float:
        return self.core.created_at

    @property
    def updated_at(self) -> float:
        return self.core.updated_at

    @property
    def expires_at(self) -> float:
        return self.core.expires_at

    @property
    def transport(self) -> str | None:
        return self.core.transport

    @property
    def loaded(self) -> bool:
        return self.lifecycle.loaded

    def _mapping(self) -> dict[str, t.Any]:
        """The session's data as it is (loaded on first use); reading it notes nothing."""
        if not self.lifecycle.loaded:
            self.core
        return self.lifecycle.data

    def _writable(self) -> dict[str, t.Any]:
        if not self.lifecycle.loaded:
            self.core
        return self.lifecycle.writable()

    # -- SessionMixin -----------------------------------------------------------------

    def permanent_now(self) -> bool:
        """``permanent`` of the loaded session (its ``"_permanent"``, or the configured default)."""
        value = self.lifecycle.data.get("_permanent")
        if value is None:
            return self.settings.permanent if self.settings is not None else True
        return bool(value)

    @property
    def permanent(self) -> bool:
        """Flask's meaning: a permanent session's cookie carries an expiry; otherwise it is a
        browser-session cookie.  The server-side lifetime ends both.  The default is
        ``SESSION_PERMANENT`` / ``KITSESSION_PERMANENT`` (``False``, as in Flask)."""
        self._mapping()
        return self.permanent_now()

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self._writable()["_permanent"] = bool(value)

    @property
    def permanent_at_load(self) -> t.Any:
        """The raw ``"_permanent"`` value the session had when it was loaded."""
        return self._permanent_at_load

    def permanent_changed(self) -> bool:
        """``permanent`` was set since the session was loaded (to another value than it had)."""
        return (self.lifecycle.loaded and self._permanent_at_load is not _UNLOADED
                and self.lifecycle.data.get("_permanent") != self._permanent_at_load)

    @property
    def new(self) -> bool:  # type: ignore[override]
        return self.core.is_new

    @property
    def modified(self) -> bool:
        return self.lifecycle.may_have_changed()

    @modified.setter
    def modified(self, value: bool) -> None:
        if value:
            self.core
            self.lifecycle.note_changed()

    # -- mapping ----------------------------------------------------------------------

    def __getitem__(self, key: str) -> t.Any:
        value = self._mapping()[key]
        if isinstance(value, (list, dict)):
            self.lifecycle.note_changed()
        return value

    def get(self, key: str, default: t.Any = None) -> t.Any:
        value = self._mapping().get(key, default)
        if isinstance(value, (list, dict)):
            self.lifecycle.note_changed()
        return value

    def __setitem__(self, key: str, value: t.Any) -> None:
        self._writable()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._writable()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._mapping()

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def setdefault(self, key: str, default: t.Any = None) -> t.Any:
        return self._writable().setdefault(key, default)

    def pop(self, key: str, *default: t.Any) -> t.Any:
        return self._writable().pop(key, *default)

    def clear(self) -> None:
        """Empty the session and end its user link (Flask's logout idiom); the record is removed."""
        self._writable().clear()
        self.core.user_id = None

    def __repr__(self) -> str:
        return f"<FlaskSession {self.lifecycle.current!r}>"
