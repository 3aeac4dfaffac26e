"""The warning for sessions kept in one process's memory while several processes serve them.

A :class:`~kitsession_wsgi.MemoryStore` is a dict inside one process.  Under a
server with several worker processes (``gunicorn -w 2``), a request that reaches
another worker finds no session and the user is signed out, with nothing in any
log.  The library can tell in two ways, and says so once per process:

* the request's environ says ``wsgi.multiprocess`` is ``True`` (PEP 3333: the
  same application object may be invoked by another process);
* the process was forked after the store was built (gunicorn's ``--preload``,
  ``multiprocessing``): the child holds a copy that its parent never sees.

:class:`~kitsession_wsgi._lifecycle.RequestLifecycle` calls :func:`check` for a
:attr:`~kitsession_wsgi.SessionStore.process_local` store while :data:`due`; once
the warning is written :data:`due` is ``False`` and a request pays one boolean test.
A forked child owes its own warning (its log lines are its own).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from .stores.base import SessionStore

__all__ = ["check", "due", "warning_text"]

logger = logging.getLogger("kitsession_wsgi")

#: whether this process still owes the warning (one per process)
due = True
#: whether this process is a forked child (then a store's creator pid is compared)
_forked = False
_lock = threading.Lock()

_FIX = ('use a store every process shares, e.g. KITSESSION_STORE="sqlite:///sessions.db" (one machine) '
        'or KITSESSION_STORE="redis://localhost:6379/0" (Flask; with SessionMiddleware, '
        'SessionManager(store_from_url(...)) from kitsession_wsgi.stores.urls); '
        'see "Several workers: a shared store" in the deployment guide')


def warning_text(reason: str) -> str:
    """The warning: what (a MemoryStore), why (``reason``), and the one-line fix."""
    return (f"sessions are kept in a MemoryStore, in the memory of process {os.getpid()} only, but {reason}: "
            "a request that reaches another process finds no session and its user is signed out. Fix: " + _FIX)


def check(store: SessionStore, environ: Any) -> None:
    """Log the warning (once per process) if ``environ`` or a fork shows several processes serve ``store``."""
    global due
    if isinstance(environ, dict) and environ.get("wsgi.multiprocess") is True:
        reason = "the WSGI server runs several worker processes (wsgi.multiprocess is True)"
    elif _forked and getattr(store, "created_in_pid", None) not in (None, os.getpid()):
        reason = (f"this process was forked from process {getattr(store, 'created_in_pid')}, which built the "
                  "store: each holds its own copy")
    else:
        return
    with _lock:
        if not due:
            return
        due = False
    logger.warning("%s", warning_text(reason))


def _after_fork_in_child() -> None:
    global due, _forked
    due = True
    _forked = True


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
