"""Serve the example with waitress: ``python -m examples.flask_app`` (what ``make run`` runs).

``HOST`` and ``PORT`` choose the address (default ``127.0.0.1:5000``).  The app
speaks plain http with ``KITSESSION_SECURE`` off, so it only listens on a
loopback address; deploy it behind HTTPS with the Secure flag on instead.

A mistake in the address (a port in use, a port that needs root, a ``PORT``
that is not a number) is one line on stderr and a non-zero exit status, not a
traceback: :data:`EXIT_CANNOT_LISTEN` when the address cannot be listened on,
:data:`EXIT_BAD_ADDRESS` for an address refused before trying.
"""

from __future__ import annotations

import errno
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

#: exit status for an address refused before trying (not loopback, not a port number)
EXIT_BAD_ADDRESS = 2
#: exit status when the address cannot be listened on (in use, needs privileges, not local)
EXIT_CANNOT_LISTEN = 3


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


def parse_port(value: str | None) -> int | None:
    """``PORT`` as a number from 0 to 65535 (0: any free port), ``None`` when it is not one."""
    text = (value or "5000").strip()
    if not text.isdigit() or int(text) > 65535:
        return None
    return int(text)


def cannot_listen(host: str, port: int, error: OSError) -> str:
    """The one line that says why ``host:port`` cannot be listened on, and what to do."""
    if error.errno == errno.EADDRINUSE:
        return f"port {port} is in use: try make run PORT={port + 1}"
    if error.errno == errno.EACCES:
        return f"port {port} needs root privileges: try make run PORT=5000"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine: try make run HOST=127.0.0.1"
    return f"cannot listen on {host}:{port}: {error.strerror or error}"


def main() -> int:
    """Start the server; returns the process exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    host = os.environ.get("HOST") or "127.0.0.1"
    port = parse_port(os.environ.get("PORT"))
    if port is None:
        print(f"PORT must be a number from 0 to 65535, got {os.environ.get('PORT')!r}", file=sys.stderr)
        return EXIT_BAD_ADDRESS
    if not is_loopback(host):
        print(
            f"refusing to serve on {host}: the example serves plain http with Secure cookies off, "
            "so it listens on a loopback address only (HOST=127.0.0.1).",
            file=sys.stderr,
        )
        return EXIT_BAD_ADDRESS
    app = create_app()
    try:
        server = create_server(AccessLog(app), host=host, port=port, threads=8, ident="kitsession-example")
    except OSError as error:
        print(cannot_listen(host, port, error), file=sys.stderr)
        return EXIT_CANNOT_LISTEN
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
