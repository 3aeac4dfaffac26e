"""What a browser does through werkzeug's test client (the WSGI and Flask suites both use it).

A Flask test client is a werkzeug :class:`~werkzeug.test.Client`, so one
helper serves both adapters.
"""

from __future__ import annotations

from typing import Any

from werkzeug.test import Client, TestResponse

from session_helpers import SetCookie, parse_set_cookie


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
