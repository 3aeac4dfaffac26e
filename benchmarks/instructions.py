"""Instructions per request under callgrind: deterministic where the clock on a busy machine is not.

Each scenario runs in its own ``valgrind --tool=callgrind`` process twice, with
``--base`` and ``--base + --requests`` requests after the same warm-up; the
difference of the two totals divided by ``--requests`` is the cost of one
request, with start-up, imports and warm-up cancelled out (``PYTHONHASHSEED=0``
keeps the two processes alike).  Needs no client-request library.

    .venv/bin/python benchmarks/instructions.py                  # every scenario
    .venv/bin/python benchmarks/instructions.py flask-read raw    # some
    .venv/bin/python benchmarks/instructions.py --list
    .venv/bin/python benchmarks/instructions.py --wall            # interleaved clock ratios

Scenarios (MemoryStore, a returning client whose session holds the ~200-byte payload):

* ``raw``: a bare WSGI callable (the middleware's floor); ``bare``: bare Flask, no SECRET_KEY,
  the ``/read`` route (Flask's null session); ``bare-plain``: bare Flask, a route that
  never touches the session;
* ``flask-read`` / ``flask-write``: KitSession, the view reads one key / sets one key;
* ``flask-untouched``: KitSession under Flask's defaults (refresh on, not permanent), a view
  that never touches the session; ``-permanent`` with a permanent session; ``-norefresh``
  with ``SESSION_REFRESH_EACH_REQUEST=False``;
* ``mw-read`` / ``mw-write`` / ``mw-untouched``: ``SessionMiddleware`` around a bare callable.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

WARMUP = 300

SCENARIOS = (
    "raw", "bare", "bare-plain", "flask-read", "flask-write", "flask-untouched",
    "flask-untouched-permanent", "flask-untouched-norefresh", "mw-read", "mw-write", "mw-untouched",
)


def build(scenario: str) -> Any:
    """A zero-argument callable doing one request of ``scenario`` (logged in first where it needs it)."""
    from kitbench.harness import Caller, environ_for, flask_app, login_cookie

    if scenario == "raw":
        def raw(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        return Caller(raw, environ_for("/read"))
    if scenario.startswith("bare"):
        app, _ = flask_app("bare", secret=False)
        return Caller(app, environ_for("/plain" if scenario == "bare-plain" else "/read"))
    if scenario.startswith("flask"):
        from kitsession_wsgi import MemoryStore
        from kitsession_wsgi.flask import KitSession

        app, _ = flask_app("kit", secret=True)
        if scenario.endswith("-norefresh"):
            app.config["SESSION_REFRESH_EACH_REQUEST"] = False
        if scenario.endswith("-permanent"):
            app.config["SESSION_PERMANENT"] = True
        KitSession(app, store=MemoryStore())
        cookie = login_cookie(app)
        path = {"flask-read": "/read", "flask-write": "/write"}.get(scenario, "/plain")
        return Caller(app, environ_for(path, cookie))
    if scenario.startswith("mw"):
        from kitbench.harness import SECRET, raw_session_app
        from kitsession_wsgi import MemoryStore, SessionManager
        from kitsession_wsgi.wsgi import SessionMiddleware

        inner = raw_session_app("kit")

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            if environ["PATH_INFO"] == "/plain":
                start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
                return [b"ok"]
            return inner(environ, start_response)

        middleware = SessionMiddleware(app, SessionManager(MemoryStore(), keys=[SECRET]))
        cookie = login_cookie(middleware)
        path = {"mw-read": "/read", "mw-write": "/write"}.get(scenario, "/plain")
        return Caller(middleware, environ_for(path, cookie))
    raise SystemExit(f"unknown scenario {scenario!r} (--list)")


def child(scenario: str, count: int) -> None:
    import gc

    call = build(scenario)
    for _ in range(WARMUP):
        call()
    gc.collect()
    gc.disable()  # as timeit does: a collection would land in one of the two runs only
    for _ in range(count):
        call()


def wall_ratios(scenarios: list[str], rounds: int = 8, count: int = 300, reps: int = 5) -> None:
    """Interleaved on the clock: each scenario against its baseline (bare Flask for Flask rows,
    the raw callable for the middleware's), A B A B in one process; the median of
    ``reps`` repetitions of the median sub-round ratio (and, for the middleware, the
    microseconds over the raw callable)."""
    import gc
    import statistics
    import time

    def timed(call: Any) -> float:
        start = time.perf_counter()
        for _ in range(count):
            call()
        return (time.perf_counter() - start) / count

    print("| scenario | x baseline (interleaved) | us over baseline |\n|---|---:|---:|")
    for scenario in scenarios:
        baseline = build("raw" if scenario.startswith("mw") else
                         "bare-plain" if scenario.startswith("flask-untouched") else "bare")
        call = build(scenario)
        for _ in range(WARMUP):
            baseline()
            call()
        ratios, extra = [], []
        gc.disable()
        try:
            for _ in range(reps):
                pairs = [(timed(baseline), timed(call)) for _ in range(rounds)]
                ratios.append(statistics.median(b / a for a, b in pairs))
                extra.append(statistics.median((b - a) * 1e6 for a, b in pairs))
        finally:
            gc.enable()
        print(f"| {scenario} | {statistics.median(ratios):.2f}x | {statistics.median(extra):+.1f} |", flush=True)


def instructions(scenario: str, count: int) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
         "--child", scenario, str(count)],
        env=env, capture_output=True, text=True, check=False)
    match = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or match is None:
        raise SystemExit(f"{scenario}: valgrind failed\n{result.stderr[-3000:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", help="scenario keys (default: all)")
    parser.add_argument("--base", type=int, default=200, help="requests in the shorter run")
    parser.add_argument("--requests", type=int, default=1000, help="extra requests in the longer run")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--wall", action="store_true",
                        help="interleaved wall-clock ratios instead (flask-untouched* against bare-plain)")
    parser.add_argument("--child", nargs=2, metavar=("SCENARIO", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    if args.list:
        print("\n".join(SCENARIOS))
        return
    if args.wall:
        wall_ratios(args.scenarios or [s for s in SCENARIOS if s.startswith(("flask", "mw"))])
        return
    print("| scenario | instructions per request |\n|---|---:|")
    for scenario in args.scenarios or SCENARIOS:
        short = instructions(scenario, args.base)
        long = instructions(scenario, args.base + args.requests)
        print(f"| {scenario} | {round((long - short) / args.requests / 1000, 1)}k |", flush=True)


if __name__ == "__main__":
    main()
