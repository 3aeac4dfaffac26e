"""``python -m examples.wsgi_app``: serve the plain-WSGI example on 127.0.0.1 (``PORT``, default 8000)."""

from __future__ import annotations

import os
from wsgiref.simple_server import make_server

from . import app

if __name__ == "__main__":
    port = int(os.environ.get("PORT") or "8000")
    with make_server("127.0.0.1", port, app) as server:
        print(f"kitsession WSGI example running on http://127.0.0.1:{port}/  (Ctrl+C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
