"""svelte-kit-session's operations, bound to the current app's manager.

.. versionadded:: 0.1
"""

from __future__ import annotations

import typing as t

from ..session import Session
from ..stores.base import UserId
from ._state import current_flask_session, get_manager
from .view import FlaskSession

__all__ = [
    "create_session", "get_all_sessions", "get_session", "get_sessions_for_user", "remove_all_sessions_for_user",
    "remove_session", "remove_session_by_handle", "remove_session_cookie", "session_token", "set_session",
    "set_session_cookie",
]


def create_session(user_id: UserId | None = None, data: dict[str, t.Any] | None = None) -> Session:
    """:meth:`SessionManager.create_session` on the current app's manager."""
    return get_manager().create_session(user_id, data)


def get_session(id: str) -> Session | None:
    """:meth:`SessionManager.get_session` on the current app's manager."""
    return get_manager().get_session(id)


def _core(session: Session | FlaskSession) -> Session:
    """The core session of ``flask.session`` (a decorated view's ``session``), or ``session`` itself."""
    return session.core if isinstance(session, FlaskSession) else session


def set_session(session: Session | FlaskSession, data: dict[str, t.Any]) -> Session:
    """:meth:`SessionManager.set_session` on the current app's manager."""
    return get_manager().set_session(_core(session), data)


def remove_session(session: Session | FlaskSession) -> bool:
    """:meth:`SessionManager.remove_session` on the current app's manager."""
    return get_manager().remove_session(_core(session))


def remove_all_sessions_for_user(user_id: UserId, session: Session | FlaskSession | None = None) -> int:
    """:meth:`SessionManager.remove_all_sessions_for_user` on the current app's manager."""
    return get_manager().remove_all_sessions_for_user(user_id, None if session is None else _core(session))


def remove_session_by_handle(handle: str, *, user_id: UserId | None = None) -> bool:
    """:meth:`SessionManager.remove_session_by_handle` on the current app's manager.

    For a "your devices" page: pass the signed-in user's id so nobody can
    revoke someone else's session.
    """
    return get_manager().remove_session_by_handle(handle, user_id=user_id)


def get_all_sessions() -> list[Session]:
    """:meth:`SessionManager.get_all_sessions` on the current app's manager."""
    return get_manager().get_all_sessions()


def get_sessions_for_user(user_id: UserId) -> list[Session]:
    """:meth:`SessionManager.get_sessions_for_user` on the current app's manager."""
    return get_manager().get_sessions_for_user(user_id)


def session_token(session: Session | FlaskSession | None = None) -> str:
    """:meth:`SessionManager.session_token` on the current app's manager (default: this request's session).

    In a ``with_new_session`` view, pass the fresh session: it is stored now and
    its token returned (needs ``KITSESSION_BEARER = True``)::

        @app.post("/api/token")
        @with_new_session
        def create_token(session):
            session.data = {"id": user.id}
            return {"token": session_token(session)}

    .. versionadded:: 0.2
    """
    return get_manager().session_token(current_flask_session().core if session is None else _core(session))


def set_session_cookie(session_or_id: Session | FlaskSession | str) -> str:
    """:meth:`SessionManager.set_session_cookie` on the current app's manager."""
    return get_manager().set_session_cookie(session_or_id if isinstance(session_or_id, str) else _core(session_or_id))


def remove_session_cookie() -> str:
    """:meth:`SessionManager.remove_session_cookie` on the current app's manager."""
    return get_manager().remove_session_cookie()
