"""The example apps (examples/flask_app, examples/wsgi_app) through werkzeug's test client.

These run everywhere (SQLite in a temp dir, no server, no browser); the same
flows in a real browser against a real server are in ``test_browser.py``.
Pages are read with :mod:`html.parser` (forms, fields, marked elements), never
with regexes over the HTML.
"""

from __future__ import annotations

import os
import secrets
import socket
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import check_password_hash
from werkzeug.test import Client, TestResponse

from kitsession_wsgi import MemoryStore, SessionManager
from kitsession_wsgi.stores.peewee import PeeweeStore

# `python -m pytest` (what `make test` runs) puts the repository root on sys.path;
# a bare `pytest` does not, and the examples are not an installed package.
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from examples.flask_app import create_app  # noqa: E402
from examples.flask_app.formatting import describe_user_agent, duration, relative_time  # noqa: E402
from examples.flask_app.models import User  # noqa: E402
from examples.flask_app.settings import persistent_secret_key  # noqa: E402
from clocks import FakeClock  # noqa: E402
from servers import MYSQL_URL, POSTGRES_URL, service_missing  # noqa: E402
from store_kinds import STORE_KINDS, store_servers  # noqa: E402, F401 (store_servers is a fixture)

PASSWORD = "correct horse battery"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
CHROME_LINUX = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/131.0.0.0 Safari/537.36")


# -- reading pages ---------------------------------------------------------------------


@dataclass
class Form:
    action: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[str] = field(default_factory=list)


class PageParser(HTMLParser):
    """Collects forms (action, named input values, button texts) and device rows."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.device_rows: list[dict[str, str]] = []
        self.texts: dict[str, str] = {}
        self._form: Form | None = None
        self._capture: tuple[str, list[str], str] | None = None
        self._in_button = False
        self._in_time = False
        self._time_label = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._form = Form(action=attributes.get("action", ""))
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and "name" in attributes:
            self._form.fields[attributes["name"]] = attributes.get("value", "")
        elif tag == "button":
            self._in_button = True
        elif tag == "tr" and "data-handle" in attributes:
            self.device_rows.append({"handle": attributes["data-handle"], "class": attributes.get("class", "")})
        elif tag == "td" and self.device_rows and "data-label" in attributes:
            self._in_time = True
            self.device_rows[-1][attributes["data-label"]] = ""
            self._time_label = attributes["data-label"]
        if "data-testid" in attributes:
            self._capture = (attributes["data-testid"], [], tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "button":
            self._in_button = False
        elif tag == "td":
            self._in_time = False
        if self._capture is not None and tag == self._capture[2]:
            name, parts, _ = self._capture
            self.texts[name] = "".join(parts).strip()
            self._capture = None

    def handle_data(self, data: str) -> None:
        if self._in_button and self._form is not None:
            self._form.buttons.append(data.strip())
        if self._capture is not None:
            self._capture[1].append(data)
        if self._in_time:
            row = self.device_rows[-1]
            row[self._time_label] = f"{row[self._time_label]} {data.strip()}".strip()


def parse(response: TestResponse) -> PageParser:
    parser = PageParser()
    parser.feed(response.get_data(as_text=True))
    return parser


def form(response: TestResponse, action: str) -> Form:
    """The page's form posting to ``action`` (first one)."""
    for candidate in parse(response).forms:
        if candidate.action == action:
            return candidate
    raise AssertionError(f"no form posting to {action} on the page")


def csrf_token(client: FlaskClient, page: str = "/login") -> str:
    token = form(client.get(page), "/login" if page == "/login" else "/logout").fields["csrf_token"]
    assert token
    return token


def location_path(response: TestResponse) -> str:
    return urlsplit(response.headers["Location"]).path


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's own SECRET_KEY / KITSESSION_STORE must not change these tests."""
    for name in ("SECRET_KEY", "KITSESSION_STORE", "KITSESSION_EXAMPLE_DB"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def database_path(tmp_path: Path) -> Path:
    return tmp_path / "example.sqlite3"


@pytest.fixture
def app(database_path: Path) -> Iterator[Flask]:
    yield create_app({"EXAMPLE_DATABASE": str(database_path), "SECRET_KEY": "test-secret", "TESTING": True})


def new_client(app: Flask, user_agent: str = CHROME_LINUX) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    return client


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return new_client(app)


def sign_up(client: FlaskClient, email: str = "ada@example.com", password: str = PASSWORD) -> TestResponse:
    token = form(client.get("/signup"), "/signup").fields["csrf_token"]
    return client.post("/signup", data={"email": email, "password": password, "confirm": password,
                                        "csrf_token": token})


def log_in(client: FlaskClient, email: str = "ada@example.com", password: str = PASSWORD, *,
           keep_signed_in: bool = False) -> TestResponse:
    token = form(client.get("/login"), "/login").fields["csrf_token"]
    data = {"email": email, "password": password, "csrf_token": token}
    if keep_signed_in:
        data["keep_signed_in"] = "1"
    return client.post("/login", data=data)


def signed_in_as(client: FlaskClient) -> str | None:
    """The e-mail in the header of the home page, or ``None`` when the visitor is anonymous."""
    return parse(client.get("/")).texts.get("signed-in-as")


def manager(app: Flask) -> SessionManager:
    return app.extensions["kitsession"].manager  # type: ignore[no-any-return]


def user_sessions(app: Flask, email: str = "ada@example.com") -> list[Any]:
    with app.app_context():
        user = User.get(User.email == email)
        return manager(app).get_sessions_for_user(user.id)


# -- sign up and log in ----------------------------------------------------------------


def test_signup_creates_a_hashed_account_and_logs_in(app: Flask, client: FlaskClient) -> None:
    response = sign_up(client)
    assert response.status_code == 302 and location_path(response) == "/"
    cookie = client.get_cookie("session")
    assert cookie is not None
    assert cookie.http_only and cookie.same_site == "Strict" and cookie.path == "/"
    assert not cookie.secure  # plain http on localhost: see settings.DEFAULTS
    assert signed_in_as(client) == "ada@example.com"
    with app.app_context():
        user = User.get(User.email == "ada@example.com")
    assert user.password_hash != PASSWORD and check_password_hash(user.password_hash, PASSWORD)


@pytest.mark.parametrize(
    "email, password, confirm, message",
    [
        ("not-an-address", PASSWORD, PASSWORD, "valid e-mail"),
        ("bob@example.com", "short", "short", "at least 8"),
        ("bob@example.com", PASSWORD, PASSWORD + "x", "do not match"),
    ],
    ids=["bad-email", "short-password", "mismatch"],
)
def test_signup_rejects_bad_input_with_400(client: FlaskClient, email: str, password: str, confirm: str,
                                           message: str) -> None:
    token = form(client.get("/signup"), "/signup").fields["csrf_token"]
    response = client.post("/signup", data={"email": email, "password": password, "confirm": confirm,
                                            "csrf_token": token})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert signed_in_as(client) is None


def test_signup_with_a_taken_email_is_rejected(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    other = new_client(app)
    response = sign_up(other, email="ADA@example.com ")
    assert response.status_code == 400 and "already exists" in response.get_data(as_text=True)
    assert signed_in_as(other) is None


def test_login_replaces_the_anonymous_session_with_a_new_id(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    token = form(client.get("/login"), "/login").fields["csrf_token"]
    anonymous = client.get_cookie("session")
    assert anonymous is not None  # the login form's CSRF token lives in an anonymous session
    anonymous_sessions = len(manager(app).get_all_sessions())

    response = client.post("/login", data={"email": "ada@example.com", "password": PASSWORD, "csrf_token": token})

    assert response.status_code == 302
    logged_in = client.get_cookie("session")
    assert logged_in is not None and logged_in.value != anonymous.value
    # the anonymous session was deleted, not left behind
    assert len(manager(app).get_all_sessions()) == anonymous_sessions
    assert signed_in_as(client) == "ada@example.com"


def test_failed_login_answers_401_and_the_form_still_works(client: FlaskClient) -> None:
    sign_up(client)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    token = form(client.get("/login"), "/login").fields["csrf_token"]

    failed = client.post("/login", data={"email": "ada@example.com", "password": "wrong password",
                                         "csrf_token": token})
    assert failed.status_code == 401
    assert "Wrong e-mail address or password" in failed.get_data(as_text=True)
    assert signed_in_as(client) is None

    # The re-rendered form carries the token of the session that stayed: a retry succeeds.
    retry = form(failed, "/login").fields["csrf_token"]
    assert retry == token
    response = client.post("/login", data={"email": "ada@example.com", "password": PASSWORD, "csrf_token": retry})
    assert response.status_code == 302 and signed_in_as(client) == "ada@example.com"


def test_unknown_email_gives_the_same_answer_as_a_wrong_password(client: FlaskClient) -> None:
    response = log_in(client, email="nobody@example.com")
    assert response.status_code == 401
    assert "Wrong e-mail address or password" in response.get_data(as_text=True)


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"],
                         ids=["scheme-relative", "absolute", "backslash"])
def test_login_never_redirects_off_site(client: FlaskClient, target: str) -> None:
    sign_up(client)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    token = form(client.get("/login"), "/login").fields["csrf_token"]
    response = client.post("/login", data={"email": "ada@example.com", "password": PASSWORD,
                                           "csrf_token": token, "next": target})
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_login_returns_to_the_page_that_asked_for_it(client: FlaskClient) -> None:
    sign_up(client)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    bounced = client.get("/devices/")
    assert location_path(bounced) == "/login"
    login_page = client.get(bounced.headers["Location"])
    fields = form(login_page, "/login").fields
    assert fields["next"] == "/devices/"
    response = client.post("/login", data={**fields, "email": "ada@example.com", "password": PASSWORD})
    assert response.headers["Location"] == "/devices/"


#: ``next=`` values as an attacker writes them in a link (the raw, percent-encoded query value)
OPEN_REDIRECT_ATTACKS = [
    pytest.param("/%09/evil.example", id="tab"),
    pytest.param("/%0D/evil.example", id="cr"),
    pytest.param("/%0A/evil.example", id="lf"),
    pytest.param("/%0D%0ALocation:%20//evil.example", id="header-injection"),
    pytest.param("/%09%09/evil.example/path?x=1", id="two-tabs"),
    pytest.param("%09//evil.example", id="leading-tab"),
    pytest.param("//evil.example", id="scheme-relative"),
    pytest.param("/%2Fevil.example", id="encoded-slash"),
    pytest.param("/%5Cevil.example", id="slash-backslash"),
    pytest.param("%5C%5Cevil.example", id="two-backslashes"),
    pytest.param("/%09%5Cevil.example", id="tab-backslash"),
    pytest.param("http://evil.example/", id="absolute"),
    pytest.param("https:evil.example", id="scheme-no-slashes"),
    pytest.param("http:/evil.example", id="scheme-one-slash"),
    pytest.param("javascript:alert(1)", id="javascript"),
    pytest.param("/%00/evil.example", id="nul"),
    pytest.param("/%E2%80%A8/evil.example", id="line-separator"),
]


def browser_destination(location: str, page: str = "http://localhost/login") -> tuple[str, str]:
    """Where a browser goes for ``Location: location`` on ``page``: (scheme, host).

    As the URL standard parses it: TAB, CR and LF removed, ``\\`` read as ``/``.
    """
    for character in "\t\r\n":
        location = location.replace(character, "")
    parts = urlsplit(urljoin(page, location.replace("\\", "/")))
    return parts.scheme, parts.netloc


def assert_stays_on_site(response: TestResponse) -> None:
    assert response.status_code == 302, response.status_code
    assert browser_destination(response.headers["Location"]) == ("http", "localhost"), response.headers["Location"]


@pytest.mark.parametrize("raw_next", OPEN_REDIRECT_ATTACKS)
def test_next_never_redirects_off_site_after_the_login(client: FlaskClient, raw_next: str) -> None:
    """Regression: ``next=/%09/evil.example`` left as ``Location: //evil.example`` (werkzeug drops the
    TAB), and ``next=/%0A...`` was a 500."""
    sign_up(client)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    login_page = client.get(f"/login?next={raw_next}")
    assert login_page.status_code == 200
    fields = form(login_page, "/login").fields
    response = client.post("/login", data={**fields, "next": fields["next"] or unquote(raw_next),
                                           "email": "ada@example.com", "password": PASSWORD})
    assert_stays_on_site(response)
    assert response.headers["Location"] == "/"
    # Already signed in, the login page sends the browser on at once: on this site too.
    signed_in = client.get(f"/login?next={raw_next}")
    assert_stays_on_site(signed_in)
    assert signed_in.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/devices/", "/devices/?tab=tokens#list", "/%09/stays-here", "/a%2F/b"],
                         ids=["path", "query-and-fragment", "encoded-tab-as-text", "encoded-slash-later"])
def test_next_keeps_paths_of_this_site(client: FlaskClient, target: str) -> None:
    sign_up(client)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    fields = form(client.get("/login"), "/login").fields
    response = client.post("/login", data={**fields, "next": target, "email": "ada@example.com",
                                           "password": PASSWORD})
    assert_stays_on_site(response)
    assert response.headers["Location"] == target


# -- CSRF ------------------------------------------------------------------------------

SIGNED_IN_POST_ENDPOINTS = ["/logout", "/note", "/devices/revoke", "/devices/revoke-others"]


@pytest.mark.parametrize("endpoint", SIGNED_IN_POST_ENDPOINTS)
@pytest.mark.parametrize("sent", [None, "", "forged-token"], ids=["missing", "empty", "wrong"])
def test_post_without_the_session_token_is_rejected_with_400(client: FlaskClient, endpoint: str,
                                                             sent: str | None) -> None:
    sign_up(client)
    data = {"note": "x", "handle": "x"}
    if sent is not None:
        data["csrf_token"] = sent
    response = client.post(endpoint, data=data)
    assert response.status_code == 400
    assert "did not come from this site" in response.get_data(as_text=True)
    assert signed_in_as(client) == "ada@example.com"  # nothing happened, the logout included


def test_a_token_from_another_session_is_rejected(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    attacker = new_client(app)
    foreign_token = form(attacker.get("/login"), "/login").fields["csrf_token"]
    response = client.post("/logout", data={"csrf_token": foreign_token})
    assert response.status_code == 400
    assert signed_in_as(client) == "ada@example.com"


@pytest.mark.parametrize("endpoint", ["/login", "/signup"])
@pytest.mark.parametrize("sent", [None, "forged-token"], ids=["missing", "wrong"])
def test_a_login_form_without_the_token_never_logs_in(app: Flask, endpoint: str, sent: str | None) -> None:
    """Login CSRF: a form without this browser's token shows the form again and signs nobody in."""
    sign_up(new_client(app))
    client = new_client(app)
    data = {"email": "ada@example.com", "password": PASSWORD, "confirm": PASSWORD}
    if sent is not None:
        data["csrf_token"] = sent
    response = client.post(endpoint, data=data)
    assert response.status_code == 200
    assert "This form had expired" in response.get_data(as_text=True)
    again = form(response, endpoint).fields
    assert again["csrf_token"] and again["csrf_token"] != sent and again["email"] == "ada@example.com"
    assert "password" not in again or again["password"] == ""
    assert signed_in_as(client) is None
    # the form it was given works
    response = client.post(endpoint, data={**data, "csrf_token": again["csrf_token"]})
    if endpoint == "/login":
        assert response.status_code == 302 and signed_in_as(client) == "ada@example.com"


# -- two tabs, and devices signed out meanwhile: a page saying what happened, never a 400 ------


@pytest.mark.parametrize("endpoint", ["/login", "/signup"])
def test_logging_in_from_a_second_tab_when_already_signed_in(client: FlaskClient, endpoint: str) -> None:
    """Two tabs show the login form; the first logs in; the second's form (old token) is sent home."""
    sign_up(client)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    second_tab = form(client.get(endpoint), endpoint).fields  # both tabs hold this token
    assert log_in(client).status_code == 302  # the first tab

    response = client.post(endpoint, data={**second_tab, "email": "ada@example.com", "password": PASSWORD,
                                           "confirm": PASSWORD, "next": "/devices/"})

    assert response.status_code == 302 and response.headers["Location"] == "/devices/"
    page = client.get("/devices/").get_data(as_text=True)
    assert "You are already signed in as ada@example.com." in page
    assert len(user_sessions(client.application)) == 1


def test_a_note_saved_after_logging_out_in_another_tab_is_kept_through_the_login(client: FlaskClient) -> None:
    sign_up(client)
    home_tab = csrf_token(client, "/")  # the second tab's home page, with its note form
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})  # the first tab
    assert client.get_cookie("session") is None

    response = client.post("/note", data={"csrf_token": home_tab, "note": "buy milk"})

    assert response.status_code == 200
    page = parse(response)
    assert page.texts["login-notice"] == "You are signed out, so your note was not saved yet. Log in and it will be."
    assert page.texts["pending-note"] == "buy milk"
    login_form = form(response, "/login").fields
    assert login_form["note"] == "buy milk" and login_form["next"] == "/"
    logged_in = client.post("/login", data={**login_form, "email": "ada@example.com", "password": PASSWORD},
                            follow_redirects=True)
    assert "your note is saved" in logged_in.get_data(as_text=True)
    assert form(logged_in, "/note").fields["note"] == "buy milk"


def test_a_failed_login_keeps_the_pending_note(client: FlaskClient) -> None:
    sign_up(client)
    home_tab = csrf_token(client, "/")
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    login_form = form(client.post("/note", data={"csrf_token": home_tab, "note": "buy milk"}), "/login").fields
    failed = client.post("/login", data={**login_form, "email": "ada@example.com", "password": "wrong password"})
    assert failed.status_code == 401 and form(failed, "/login").fields["note"] == "buy milk"


@pytest.mark.parametrize(
    "endpoint, lands_on",
    [("/note", None), ("/logout", "/signed-out"), ("/devices/revoke-others", "/login")],
)
def test_a_form_posted_from_a_device_signed_out_meanwhile_says_why(
    app: Flask, endpoint: str, lands_on: str | None
) -> None:
    """Not an attack, so not a CSRF 400: the old session's token, with a cookie that no longer works."""
    laptop, phone = new_client(app), new_client(app, user_agent="Mozilla/5.0 (iPhone)")
    sign_up(laptop)
    log_in(phone)
    phone_token = csrf_token(phone, "/")  # the phone's page is open, its form filled in
    laptop.post("/devices/revoke-others", data={"csrf_token": csrf_token(laptop, "/")})
    response = phone.post(endpoint, data={"csrf_token": phone_token, "note": "call mum"})
    if lands_on is None:
        assert response.status_code == 200
        assert parse(response).texts["pending-note"] == "call mum"
    else:
        assert response.status_code == 302 and location_path(response) == lands_on
        response = phone.get(response.headers["Location"])
    assert "This device was signed out from another device." in response.get_data(as_text=True)
    assert signed_in_as(laptop) == "ada@example.com"


def test_a_revoked_device_is_told_why_on_the_landing_page_once(app: Flask) -> None:
    laptop, phone = new_client(app), new_client(app, FIREFOX)
    sign_up(laptop)
    log_in(phone)
    laptop.post("/devices/revoke-others", data={"csrf_token": csrf_token(laptop, "/")})

    landing = phone.get("/").get_data(as_text=True)

    assert "Sessions that stay on the server" in landing  # the landing page, signed out
    assert "This device was signed out from another device." in landing
    assert "signed out from another device" not in phone.get("/").get_data(as_text=True)


def test_an_expired_session_is_told_it_expired(database_path: Path) -> None:
    clock = FakeClock()
    app = create_app({"EXAMPLE_DATABASE": str(database_path), "SECRET_KEY": "test-secret", "TESTING": True,
                      "KITSESSION_CLOCK": clock})
    client = new_client(app)
    sign_up(client)
    clock.advance(7 * 86400 + 60)  # a week without a visit: past the idle timeout
    bounced = client.get("/devices/")
    assert location_path(bounced) == "/login"
    page = client.get(bounced.headers["Location"]).get_data(as_text=True)
    assert "Your session expired." in page and "another device" not in page


@pytest.mark.parametrize("cookie", ["s%3Aforged.AAAA", "garbage", "s%3A" + "A" * 43 + ".bm90IGEgbWFj"],
                         ids=["bad-mac", "garbage", "unsigned-looking"])
def test_a_forged_cookie_is_just_signed_out(app: Flask, client: FlaskClient, cookie: str) -> None:
    client.set_cookie("session", cookie)
    landing = client.get("/")
    assert landing.status_code == 200 and "Sessions that stay on the server" in landing.get_data(as_text=True)
    client.set_cookie("session", cookie)
    bounced = client.get("/devices/")
    assert location_path(bounced) == "/login"
    for page in (landing, client.get(bounced.headers["Location"])):
        text = page.get_data(as_text=True)
        assert "another device" not in text and "expired" not in text


def test_login_gives_the_new_session_a_new_token(client: FlaskClient) -> None:
    anonymous_token = form(client.get("/login"), "/login").fields["csrf_token"]
    sign_up(client)
    assert csrf_token(client, "/") != anonymous_token
    response = client.post("/logout", data={"csrf_token": anonymous_token})
    assert response.status_code == 400


# -- home page: flask.session and flash() ----------------------------------------------


def test_home_page_keeps_a_counter_and_a_note_in_flask_session(client: FlaskClient) -> None:
    sign_up(client)
    counts = [parse(client.get("/")).texts["visits"] for _ in range(3)]
    assert counts == ["1", "2", "3"]

    token = csrf_token(client, "/")
    response = client.post("/note", data={"note": "buy milk", "csrf_token": token}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Note saved in this session." in page  # flash() shows once
    assert form(response, "/note").fields["note"] == "buy milk"
    assert "Note saved" not in client.get("/").get_data(as_text=True)


def test_anonymous_home_page_stores_nothing_and_sets_no_cookie(app: Flask, client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    assert manager(app).get_all_sessions() == []


# -- "Keep me signed in", what the pages say about it, caching ---------------------------------


def test_without_keep_me_signed_in_the_cookie_ends_with_the_browser(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    log_in(client)
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.expires is None and cookie.max_age is None
    home = parse(client.get("/"))
    assert home.texts["session-ends"] == "when the browser closes"
    assert home.texts["lifetime"].startswith('"Keep me signed in" was not ticked: this browser is signed out when')
    assert "until 7 days pass without a visit, and 30 days at most" in home.texts["lifetime"]
    assert client.get_cookie("session").expires is None  # type: ignore[union-attr]


def test_keep_me_signed_in_makes_the_cookie_outlive_the_browser(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    log_in(client, keep_signed_in=True)
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.expires is not None
    session = user_sessions(app)[0]
    assert abs(cookie.expires.timestamp() - session.expires_at) <= 1
    home = parse(client.get("/"))
    assert home.texts["session-ends"] == "in 7 days"
    assert home.texts["lifetime"] == ('You ticked "Keep me signed in": this browser stays signed in after it closes, '
                                      "until 7 days pass without a visit, and 30 days at most.")
    kept = client.get_cookie("session")
    assert kept is not None and kept.expires is not None, "still a persistent cookie on later pages"


@pytest.mark.parametrize("keep_signed_in", [False, True], ids=["browser-session", "kept"])
def test_sign_up_offers_keep_me_signed_in_too(client: FlaskClient, keep_signed_in: bool) -> None:
    token = form(client.get("/signup"), "/signup").fields["csrf_token"]
    data = {"email": "ada@example.com", "password": PASSWORD, "confirm": PASSWORD, "csrf_token": token}
    if keep_signed_in:
        data["keep_signed_in"] = "1"
    assert client.post("/signup", data=data).status_code == 302
    cookie = client.get_cookie("session")
    assert cookie is not None and (cookie.expires is not None) is keep_signed_in


def test_the_login_form_offers_keep_me_signed_in_unticked(client: FlaskClient) -> None:
    page = client.get("/login").get_data(as_text=True)
    assert 'name="keep_signed_in" value="1" >' in page or 'name="keep_signed_in" value="1">' in page
    assert "Keep me signed in" in page and "checked" not in page


@pytest.mark.parametrize("path", ["/", "/devices/", "/login", "/signup", "/signed-out"])
def test_pages_are_not_cached(client: FlaskClient, path: str) -> None:
    sign_up(client)
    if path in ("/login", "/signup", "/signed-out"):
        client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


def test_static_files_may_be_cached(client: FlaskClient) -> None:
    response = client.get("/static/style.css")
    assert response.status_code == 200 and "no-store" not in response.headers.get("Cache-Control", "")
    response.close()


def test_the_example_calls_no_private_name_of_the_library() -> None:
    """The example is what users copy: it reaches the library through its public API only."""
    import ast

    offenders = []
    for path in sorted((REPO_ROOT / "examples" / "flask_app").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                offenders.append(f"{path.name}:{node.lineno}: .{node.attr}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kitsession_wsgi"):
                names = [*(node.module or "").split("."), *(alias.name for alias in node.names)]
                offenders += [f"{path.name}:{node.lineno}: {name}" for name in names if name.startswith("_")]
    assert offenders == []


# -- the devices page ------------------------------------------------------------------


def test_devices_page_lists_every_session_and_marks_this_one(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    phone = new_client(app, SAFARI_IPHONE)
    log_in(phone)
    laptop = new_client(app, FIREFOX)
    log_in(laptop)

    response = client.get("/devices/")
    page = response.get_data(as_text=True)
    rows = parse(response).device_rows
    sessions = user_sessions(app)
    assert len(rows) == len(sessions) == 3
    assert {row["handle"] for row in rows} == {s.handle for s in sessions}
    current = [row for row in rows if "current" in row["class"]]
    assert len(current) == 1 and rows[0] is current[0]  # this device first
    assert "This device" in page
    for label in ("Chrome 131 on Linux", "Safari 17 on iPhone", "Firefox 133 on Windows"):
        assert label in page
    # this device's row offers Log out; every other row offers to sign it out, by handle
    revoke_forms = [f for f in parse(response).forms if f.action == "/devices/revoke"]
    assert {f.fields["handle"] for f in revoke_forms} == {row["handle"] for row in rows[1:]}
    # the page shows handles, never session ids
    assert phone.get_cookie("session").value.split(".")[0][len("s%3A"):] not in page  # type: ignore[union-attr]


def test_last_active_moves_with_activity_and_the_page_shows_it(database_path: Path) -> None:
    clock = FakeClock()
    app = create_app({"EXAMPLE_DATABASE": str(database_path), "SECRET_KEY": "test-secret", "TESTING": True,
                      "KITSESSION_CLOCK": clock})
    laptop = new_client(app)
    sign_up(laptop)
    phone = new_client(app, FIREFOX)
    log_in(phone, keep_signed_in=True)
    signed_in_at = clock.now

    clock.advance(2 * 3600)
    rows = parse(laptop.get("/devices/")).device_rows

    laptop_row, phone_row = rows
    assert "current" in laptop_row["class"]
    assert laptop_row["Signed in"] == "2 hours ago" and laptop_row["Last active"] == "just now"
    assert phone_row["Signed in"] == "2 hours ago" and phone_row["Last active"] == "2 hours ago"
    assert laptop_row["Expires"] == "in 7 days or when its browser closes"
    assert phone_row["Expires"] == "in 7 days"  # "Keep me signed in": the cookie outlives the browser
    sessions = {s.handle: s for s in user_sessions(app)}
    assert sessions[laptop_row["handle"]].updated_at == clock.now
    assert sessions[laptop_row["handle"]].expires_at == clock.now + 7 * 86400
    assert sessions[phone_row["handle"]].updated_at == signed_in_at

    clock.advance(7 * 86400 - 60)  # the phone has been idle for a week: signed out by the server
    assert signed_in_as(phone) is None
    assert signed_in_as(laptop) == "ada@example.com"


def test_devices_page_needs_a_login(client: FlaskClient) -> None:
    response = client.get("/devices/")
    assert response.status_code == 302 and location_path(response) == "/login"


def test_revoking_one_device_signs_only_that_one_out(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    phone = new_client(app, SAFARI_IPHONE)
    log_in(phone)
    laptop = new_client(app, FIREFOX)
    log_in(laptop)
    devices_page = client.get("/devices/")
    phone_form = next(f for f in parse(devices_page).forms
                      if f.action == "/devices/revoke" and f.fields["handle"] in {
                          s.handle for s in user_sessions(app)
                          if s.device is not None and s.device.user_agent == SAFARI_IPHONE})

    response = client.post("/devices/revoke", data=phone_form.fields, follow_redirects=True)

    assert "That device has been signed out." in response.get_data(as_text=True)
    assert len(parse(response).device_rows) == 2
    bounced = phone.get("/devices/")
    assert bounced.status_code == 302 and location_path(bounced) == "/login"
    assert "signed out from another device" in phone.get("/login").get_data(as_text=True)
    assert signed_in_as(laptop) == "ada@example.com"
    assert signed_in_as(client) == "ada@example.com"


def test_a_user_cannot_revoke_another_users_session(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    mallory = new_client(app)
    sign_up(mallory, email="mallory@example.com")
    ada_handle = user_sessions(app)[0].handle

    response = mallory.post("/devices/revoke", data={"handle": ada_handle, "csrf_token": csrf_token(mallory, "/")},
                            follow_redirects=True)

    assert "already signed out" in response.get_data(as_text=True)
    assert signed_in_as(client) == "ada@example.com"


def test_sign_out_every_other_device(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    others = [new_client(app, agent) for agent in (SAFARI_IPHONE, FIREFOX)]
    for other in others:
        log_in(other)
    assert len(user_sessions(app)) == 3
    revoke_others = form(client.get("/devices/"), "/devices/revoke-others")

    response = client.post("/devices/revoke-others", data=revoke_others.fields, follow_redirects=True)

    assert "Signed out 2 other devices." in response.get_data(as_text=True)
    assert len(user_sessions(app)) == 1
    for other in others:
        assert signed_in_as(other) is None
    assert signed_in_as(client) == "ada@example.com"


# -- log out ---------------------------------------------------------------------------


def test_logout_deletes_the_session_and_clears_the_cookie(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    stolen = client.get_cookie("session")
    assert stolen is not None
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 302 and location_path(response) == "/signed-out"
    assert client.get_cookie("session") is None
    assert user_sessions(app) == []
    landing = client.get("/signed-out")
    assert "You have been signed out" in landing.get_data(as_text=True)
    assert "Set-Cookie" not in landing.headers  # no new session for the signed-out browser

    replay = new_client(app)
    replay.set_cookie("session", stolen.value)
    assert signed_in_as(replay) is None


# -- restarts, stores, configuration ---------------------------------------------------


def test_sessions_and_accounts_survive_a_restart(database_path: Path) -> None:
    config = {"EXAMPLE_DATABASE": str(database_path), "SECRET_KEY": "test-secret", "TESTING": True}
    first = new_client(create_app(config))
    sign_up(first)
    cookie = first.get_cookie("session")
    assert cookie is not None

    restarted = new_client(create_app(config))
    restarted.set_cookie("session", cookie.value)
    assert signed_in_as(restarted) == "ada@example.com"


def test_the_default_store_is_peewee_in_the_same_sqlite_file(app: Flask, database_path: Path) -> None:
    store = manager(app).store
    assert isinstance(store, PeeweeStore)
    assert Path(store._resolve_database().database) == database_path
    assert Path(User._meta.database.obj.database) == database_path


def test_deleting_an_account_deletes_its_sessions(app: Flask, client: FlaskClient) -> None:
    sign_up(client)
    with app.app_context():
        User.delete().where(User.email == "ada@example.com").execute()
    assert manager(app).get_all_sessions() == []
    assert signed_in_as(client) is None


def test_kitsession_store_url_switches_the_store(monkeypatch: pytest.MonkeyPatch, database_path: Path) -> None:
    monkeypatch.setenv("KITSESSION_STORE", "memory")
    app = create_app({"EXAMPLE_DATABASE": str(database_path), "SECRET_KEY": "test-secret", "TESTING": True})
    assert isinstance(manager(app).store, MemoryStore)
    client = new_client(app)
    sign_up(client)
    assert signed_in_as(client) == "ada@example.com"


def store_url(kind: str, tmp_path: Path, servers: Any) -> str:
    """The ``KITSESSION_STORE`` URL a user would write for a store of ``kind``."""
    if kind == "memory":
        return "memory"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    if kind in ("postgresql", "mariadb"):
        url = POSTGRES_URL if kind == "postgresql" else MYSQL_URL
        parts = urlsplit(url)
        try:
            socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2).close()
        except OSError:
            service_missing(f"{kind} is not reachable at {url}")
        return url
    if kind == "memcached":
        return f"memcached://{servers.memcached_address()}"
    if kind == "redis-cluster":
        return str(servers.redis_cluster_url())
    assert kind == "redis"
    return str(servers.redis_url())


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_every_store_url_runs_the_devices_flow(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               store_servers: Any) -> None:
    """KITSESSION_STORE alone moves the sessions; sign in twice, sign out the other, log out."""
    monkeypatch.setenv("KITSESSION_STORE", store_url(kind, tmp_path, store_servers))
    app = create_app({"EXAMPLE_DATABASE": str(tmp_path / "users.sqlite3"), "SECRET_KEY": "test", "TESTING": True})
    expected_store = {"memory": "MemoryStore", "memcached": "MemcachedStore", "redis": "RedisStore",
                      "redis-cluster": "RedisStore"}.get(kind, "PeeweeStore")
    assert type(manager(app).store).__name__ == expected_store
    # Shared servers keep sessions between runs: start this run's user ids somewhere unused.
    with app.app_context():
        User.create(id=secrets.randbelow(10**9) + 10**6, email="placeholder@example.com", password_hash="!")
    laptop = new_client(app)
    sign_up(laptop)
    phone = new_client(app, FIREFOX)
    log_in(phone)
    assert len(user_sessions(app)) == 2

    revoke = form(laptop.get("/devices/"), "/devices/revoke-others")
    response = laptop.post("/devices/revoke-others", data=revoke.fields, follow_redirects=True)

    assert "Signed out 1 other device." in response.get_data(as_text=True)
    assert signed_in_as(phone) is None
    assert signed_in_as(laptop) == "ada@example.com"
    laptop.post("/logout", data={"csrf_token": csrf_token(laptop, "/")})
    assert laptop.get_cookie("session") is None
    assert user_sessions(app) == []


def test_environment_selects_database_and_secret_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KITSESSION_EXAMPLE_DB", str(tmp_path / "from-env.sqlite3"))
    monkeypatch.setenv("SECRET_KEY", "from-env")
    app = create_app({"TESTING": True})
    assert app.config["EXAMPLE_DATABASE"] == str(tmp_path / "from-env.sqlite3")
    assert app.config["SECRET_KEY"] == "from-env"
    assert (tmp_path / "from-env.sqlite3").exists()


def test_cookie_is_not_secure_and_idle_timeout_is_set(app: Flask) -> None:
    assert manager(app).secure is False
    assert manager(app).idle_timeout == 7 * 24 * 3600


def test_served_over_https_the_cookie_is_a_secure_host_prefixed_one(
    monkeypatch: pytest.MonkeyPatch, database_path: Path
) -> None:
    """KITSESSION_EXAMPLE_HTTPS=1: ``__Host-session``, which no subdomain or other path can toss."""
    monkeypatch.setenv("KITSESSION_EXAMPLE_HTTPS", "1")
    app = create_app({"EXAMPLE_DATABASE": str(database_path), "SECRET_KEY": "test-secret", "TESTING": True})
    client = app.test_client()
    response = sign_up(client)
    assert response.status_code == 302
    cookie = client.get_cookie("__Host-session", domain="localhost")
    assert cookie is not None and cookie.secure and cookie.path == "/" and not cookie.domain.startswith(".")
    assert manager(app).name == "__Host-session" and manager(app).secure


def test_generated_secret_key_is_persisted_privately(tmp_path: Path) -> None:
    path = tmp_path / "instance" / "secret_key"
    key = persistent_secret_key(path)
    assert len(key) >= 40
    assert persistent_secret_key(path) == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_generated_secret_key_keeps_cookies_valid_across_restarts(tmp_path: Path) -> None:
    apps = [Flask("a", instance_path=str(tmp_path / "instance")), Flask("b", instance_path=str(tmp_path / "instance"))]
    from examples.flask_app.settings import load_config

    for flask_app in apps:
        load_config(flask_app, {"EXAMPLE_DATABASE": str(tmp_path / "db.sqlite3")})
    assert apps[0].config["SECRET_KEY"] == apps[1].config["SECRET_KEY"]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_the_server_refuses_to_listen_beyond_loopback(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], host: str) -> None:
    from examples.flask_app.__main__ import main

    monkeypatch.setenv("HOST", host)
    assert main() == 2
    assert "loopback address only" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    from examples.flask_app.__main__ import is_loopback

    assert is_loopback(host)


# -- formatting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "agent, label",
    [
        (FIREFOX, "Firefox 133 on Windows"),
        (SAFARI_IPHONE, "Safari 17 on iPhone"),
        (CHROME_LINUX, "Chrome 131 on Linux"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", "Edge 131 on Windows"),
        ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 "
         "Safari/537.36", "Headless Chrome 156 on Linux"),
        ("curl/8.5.0", "curl 8"),
        ("", "Unknown browser"),
    ],
    ids=["firefox", "safari-iphone", "chrome", "edge", "headless", "curl", "empty"],
)
def test_describe_user_agent(agent: str, label: str) -> None:
    assert describe_user_agent(agent) == label


@pytest.mark.parametrize(
    "offset, text",
    [(0, "just now"), (-59, "just now"), (-120, "2 minutes ago"), (3600, "in 1 hour"),
     (7 * 86400 - 1, "in 7 days"), (-86400, "1 day ago")],
)
def test_relative_time(offset: float, text: str) -> None:
    assert relative_time(1_000_000 + offset, now=1_000_000) == text
    assert duration(0) == ""


# -- the plain-WSGI example ------------------------------------------------------------


@pytest.fixture
def wsgi_client() -> Client:
    from examples.wsgi_app import app as wsgi_app

    return Client(wsgi_app)


def test_wsgi_example_counts_logs_in_and_out(wsgi_client: Client) -> None:
    from examples.wsgi_app import manager as wsgi_manager

    assert "Visits this session: <b>1</b>" in wsgi_client.get("/").get_data(as_text=True)
    assert "Visits this session: <b>2</b>" in wsgi_client.get("/").get_data(as_text=True)
    anonymous = wsgi_client.get_cookie("session")
    assert anonymous is not None

    response = wsgi_client.post("/login", data={"name": "grace"})
    assert response.status_code == 303
    logged_in = wsgi_client.get_cookie("session")
    assert logged_in is not None and logged_in.value != anonymous.value
    assert "Hello, grace." in wsgi_client.get("/").get_data(as_text=True)
    assert len(wsgi_manager.get_sessions_for_user("grace")) == 1

    response = wsgi_client.post("/logout")
    assert response.status_code == 303
    assert wsgi_client.get_cookie("session") is None
    assert wsgi_manager.get_sessions_for_user("grace") == []
    assert "Hello, stranger." in wsgi_client.get("/").get_data(as_text=True)


def test_wsgi_example_answers_404_for_unknown_paths(wsgi_client: Client) -> None:
    assert wsgi_client.get("/nope").status_code == 404
