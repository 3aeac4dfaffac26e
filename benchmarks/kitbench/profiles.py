"""``--profile``: where a read's microseconds go, by a wall-clock sampling profiler.

A ``SIGALRM`` every 0.25 ms records the interpreted stack; nothing runs on
function calls (unlike cProfile or pyinstrument, which hook every call and so
inflate code made of many small calls, such as Flask's tagged JSON).  A sample
taken inside a C function or a blocking ``recv`` lands in the Python frame that
called it, which is the frame that owns that time.

Each sample is charged to the innermost session-related frame on its stack, by
:data:`PROFILE_RULES`: (category, file fragment, function names).  The rules
name files and functions of the package, private modules included, because
that is where the time goes; nothing here imports or calls them.  When the
package moves a function, its samples fall to the enclosing category (or to
"harness / other"), and the rule here should follow.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

#: (category, file fragment, function names); the innermost matching frame names the category
PROFILE_RULES: list[tuple[str, str, tuple[str, ...]]] = [
    ("store get (incl. driver)", "kitsession_wsgi/stores/", ("get",)),
    ("json loads of the data", "kitsession_wsgi/", ("loads",)),
    ("commit: change detection (dumps)", "kitsession_wsgi/", ("dumps",)),
    ("cookie header read", "kitsession_wsgi/cookies.py", ("cookie_header",)),
    ("cookie parse (cache miss)", "kitsession_wsgi/cookies.py", ("read_cookies",)),
    ("cookie parse (cache miss)", "kitsession_wsgi/_session_cookie.py", ("identities",)),
    ("signature verify (cache miss)", "kitsession_wsgi/signing.py", ("unsign",)),
    ("signature verify (cache miss)", "kitsession_wsgi/_session_cookie.py", ("_verify",)),
    ("id digest (session_key, cache miss)", "kitsession_wsgi/_keys.py", ("session_key",)),
    ("Session object + expiry checks", "kitsession_wsgi/_loader.py", ("from_record", "load")),
    ("Session object + expiry checks", "kitsession_wsgi/_expiry.py", ("is_live",)),
    ("Session object + expiry checks", "kitsession_wsgi/session.py", ("__init__", "from_record")),
    ("initialize_session (cookie cache lookup, rest)", "kitsession_wsgi/manager.py", ("initialize_session",)),
    ("commit (rest)", "kitsession_wsgi/manager.py", ("commit",)),
    ("commit (rest)", "kitsession_wsgi/_writer.py", ("commit",)),
    ("Vary / session headers", "kitsession_wsgi/_http.py", ("add_session_headers", "add_bearer_headers")),
    ("Flask session interface (open/save, FlaskSession)", "kitsession_wsgi/flask/", ()),
    ("middleware plumbing", "kitsession_wsgi/wsgi/", ()),
    ("request lifecycle (both adapters)", "kitsession_wsgi/_lifecycle.py", ()),
    ("Flask / werkzeug request handling", "/flask/", ()),
    ("Flask / werkzeug request handling", "/werkzeug/", ()),
]

OTHER = "harness / other"


def categorize(file_path: str, function: str, inherited: str) -> str:
    """The category of one frame, given the category of the frames that called it."""
    path = file_path.replace(os.sep, "/")
    if "save_session" in inherited and ("werkzeug/datastructures" in path or "werkzeug/sansio/response" in path):
        return "Vary / session headers"
    for category, fragment, functions in PROFILE_RULES:
        if fragment in path and (not functions or function in functions):
            if category.startswith("Flask / werkzeug") and inherited != OTHER:
                return inherited  # Flask code called from inside the session code stays with its caller
            if category.startswith("Flask session interface") and function == "save_session":
                return "Flask session interface (open/save, FlaskSession) save_session"
            return category
    return inherited


def profile_breakdown(call: Callable[[], Any], seconds: float,
                      measured_us: float) -> tuple[list[tuple[str, float, float]], str]:
    """Rows of (category, us per request, share %) for ``call``, and a note on the sample count.

    Shares of the samples are turned into microseconds with ``measured_us``,
    the cell's median from the main table.
    """
    if not hasattr(signal, "setitimer"):
        return [], "no setitimer on this platform: no breakdown"
    stacks: Counter[tuple[tuple[str, str], ...]] = Counter()

    def sample(signum: int, frame: Any) -> None:
        stack = []
        while frame is not None:
            code = frame.f_code
            stack.append((code.co_filename, code.co_name))
            frame = frame.f_back
        stacks[tuple(stack)] += 1

    for _ in range(200):
        call()
    previous = signal.signal(signal.SIGALRM, sample)
    calls = 0
    deadline = time.perf_counter() + seconds
    signal.setitimer(signal.ITIMER_REAL, 0.00025, 0.00025)
    try:
        while time.perf_counter() < deadline:
            for _ in range(20):
                call()
            calls += 20
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
    totals: Counter[str] = Counter()
    for stack, count in stacks.items():
        category = OTHER
        for file_path, function in reversed(stack):
            category = categorize(file_path, function, category)
        totals[category.replace(" save_session", "")] += count
    grand = sum(totals.values()) or 1
    rows = [(category, n / grand * measured_us, n / grand * 100) for category, n in totals.most_common()]
    return rows, f"{calls:,} requests, {grand:,} samples (one every 0.25 ms of wall-clock time)"
