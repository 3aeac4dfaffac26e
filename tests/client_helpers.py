"""What a browser does through werkzeug's test client (the WSGI and Flask suites both use it).

A Flask test client is a werkzeug :class:`~werkzeug.test.Client`, so one
helper serves both adapters.
"""

from __future__ import annotations

from typing import Any

from werkzeug.test import Client, TestResponse

from session_helpers import SetCookie, parse_set_cookie
from thread_helpers import hammer


def log_in(client: Client, path: str = "/login", *, base_url: str | None = None, **params: str) -> TestResponse:
    """GET the app's login route (query ``params``) and insist that it answered 200."""
    options: dict[str, Any] = {"query_string": params}
    if base_url is not None:
        options["base_url"] = base_url
    response = client.get(path, **options)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def session_cookies(response: TestResponse, name: str = "session") -> list[SetCookie]:
    """The response's ``Set-Cookie`` values for cookie ``name``, parsed."""
    return [c for c in (parse_set_cookie(v) for v in response.headers.getlist("Set-Cookie")) if c.name == name]


def hammer_path(clients: list[Client], path: str, *, per_thread: int,
                base_url: str | None = None) -> tuple[list[int], list[BaseException]]:
    """Each client (a browser with its own cookie jar) GETs ``path`` ``per_thread`` times in a thread
    of its own, all at once: every status and every exception."""
    options: dict[str, Any] = {} if base_url is None else {"base_url": base_url}
    return hammer(lambda index: clients[index].get(path, **options).status_code, count=len(clients),
                  per_thread=per_thread)
