"""Serve the example with waitress: ``python -m examples.flask_app`` (what ``make run`` runs).

``HOST`` and ``PORT`` choose the address (default ``127.0.0.1:5000``).  The app
speaks plain http with ``KITSESSION_SECURE`` off, so it only listens on a
loopback address; deploy it behind HTTPS with the Secure flag on instead.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import sys
import time
import typing as t

from waitress.server import create_server

from . import create_app

if t.TYPE_CHECKING:  # pragma: no cover
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("examples.flask_app")


class AccessLog:
    """WSGI middleware writing one line per request: address, request line, status, duration."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> t.Iterable[bytes]:
        started = time.perf_counter()
        status = "-"

        def logging_start_response(
            status_line: str, headers: list[tuple[str, str]], exc_info: t.Any = None
        ) -> t.Callable[[bytes], object]:
            nonlocal status
            status = status_line.split(" ", 1)[0]
            return start_response(status_line, headers, exc_info)

        try:
            return self.app(environ, logging_start_response)
        finally:
            path = environ.get("PATH_INFO", "") + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
            logger.info(
                '%s "%s %s" %s %.1fms',
                environ.get("REMOTE_ADDR", "-"),
                environ.get("REQUEST_METHOD", "-"),
                path,
                status,
                (time.perf_counter() - started) * 1000,
            )


def is_loopback(host: str) -> bool:
    """``localhost`` or an address of the loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def main() -> int:
    """Start the server; returns the process exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    host = os.environ.get("HOST") or "127.0.0.1"
    port = int(os.environ.get("PORT") or "5000")
    if not is_loopback(host):
        print(
            f"refusing to serve on {host}: the example serves plain http with Secure cookies off, "
            "so it listens on a loopback address only (HOST=127.0.0.1).",
            file=sys.stderr,
        )
        return 2
    app = create_app()
    server = create_server(AccessLog(app), host=host, port=port, threads=8, ident="kitsession-example")
    bound_port = server.effective_port
    shown_host = f"[{host}]" if ":" in host else host
    print(f"kitsession example running on http://{shown_host}:{bound_port}/  (Ctrl+C to stop)", flush=True)
    # A SIGTERM (from `kill`, a process manager or the tests) shuts down like Ctrl+C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
