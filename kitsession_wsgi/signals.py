"""Security events as blinker signals (Flask's own signal library).

Connect a receiver to audit or alert::

    from kitsession_wsgi import signals

    @signals.invalid_signature.connect
    def forged(manager, **extra):
        metrics.increment("session.forged_cookie")

Every signal is sent with the :class:`~kitsession_wsgi.SessionManager` as
sender, except :data:`evicted`, which a store sends itself.  Receivers get a ``session`` or a ``handle`` (the public SHA-256
digest of the id), never the cookie.  A ``Session``'s ``repr`` hides its id,
but ``session.id`` is the secret itself: log ``session.handle`` or
``manager.log_reference(session.handle)``, never ``session.id``.

.. versionadded:: 0.1
"""

from __future__ import annotations

from blinker import Namespace

__all__ = [
    "conflict_merged",
    "created",
    "destroyed",
    "evicted",
    "expired",
    "invalid_signature",
    "key_rotated",
    "regenerated",
    "revoked",
    "session_evicted",
    "store_unavailable",
    "unknown_id",
]

_signals = Namespace()

#: a session was stored for the first time (``session=``)
created = _signals.signal("kitsession.created")
#: a session got a new id (``session=``, ``previous_handle=``)
regenerated = _signals.signal("kitsession.regenerated")
#: a session was removed by the application (``session=``)
destroyed = _signals.signal("kitsession.destroyed")
#: a presented session had expired and was removed (``handle=``)
expired = _signals.signal("kitsession.expired")
#: a cookie failed signature verification (no extra arguments)
invalid_signature = _signals.signal("kitsession.invalid_signature")
#: a verified cookie named a session the store does not hold (``handle=``)
unknown_id = _signals.signal("kitsession.unknown_id")
#: a cookie signed with an old key was accepted and re-signed (``session=``)
key_rotated = _signals.signal("kitsession.key_rotated")
#: the store could not be reached (``error=``)
store_unavailable = _signals.signal("kitsession.store_unavailable")
#: a bounded store dropped a session to make room (sender: the store; ``handle=``,
#: ``user_id=``, ``reason=`` ``"expired"`` or ``"least_recently_used"``); sent by
#: :class:`~kitsession_wsgi.MemoryStore` at its ``max_sessions`` bound, after its lock is released
#:
#: .. versionadded:: 0.2
evicted = _signals.signal("kitsession.evicted")
#: sessions were revoked (``user_id=``, ``count=``): by ``remove_all_sessions_for_user``
#: (``count`` is how many), or one by ``remove_session_by_handle`` (``count=1``)
#:
#: .. versionadded:: 0.3
revoked = _signals.signal("kitsession.revoked")
#: a save found the session saved by another request meanwhile and merged this request's
#: changes into it (``session=``), once per merge (``on_conflict="merge"``)
#:
#: .. versionadded:: 0.3
conflict_merged = _signals.signal("kitsession.conflict_merged")
#: ``max_sessions_per_user`` removed one of a user's sessions to stay within the limit
#: after a login (``handle=``, ``user_id=``); sender: the manager
#:
#: .. versionadded:: 0.3
session_evicted = _signals.signal("kitsession.session_evicted")
