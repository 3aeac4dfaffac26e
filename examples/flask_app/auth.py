"""Accounts: sign up, log in, log out, and the ``login_required`` guard.

Logging in goes through ``with_new_session``: the visitor's anonymous session
is replaced by a fresh one with a new id (no session fixation), and only when
the view succeeds.  A failed attempt answers 4xx, so nothing is stored and the
anonymous session (with its CSRF token) stays.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import peewee
from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.security import check_password_hash, generate_password_hash

from kitsession_wsgi import Session
from kitsession_wsgi.flask import current_session, get_manager, with_delete_session, with_new_session

from .csrf import TOKEN_KEY, new_csrf_token
from .models import User

bp = Blueprint("auth", __name__)

View = TypeVar("View", bound=Callable[..., ResponseReturnValue])

MIN_PASSWORD_LENGTH = 8
#: checked against when the e-mail is unknown, so both failures take as long
_DUMMY_HASH = generate_password_hash("not a real password")


def normalize_email(value: str) -> str:
    """The address as stored: trimmed and lower-cased."""
    return value.strip().lower()


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else the home page (no open redirect)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return url_for("home.index")


def login_required(view: View) -> View:
    """Send anonymous visitors to the login page, then back to where they were going."""

    @functools.wraps(view)
    def wrapper(*args: object, **kwargs: object) -> ResponseReturnValue:
        if g.user is None or current_session.transport == "header":
            # Pages are for browsers: an API token (api.py) does not open them.
            return to_login(request.full_path.rstrip("?"))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def session_ended() -> bool:
    """The browser presented a session cookie, but its session is over (expired, or signed out elsewhere)."""
    return session_cookie_was_sent() and current_session.is_new


def to_login(next_path: str | None = None) -> ResponseReturnValue:
    """The login page, saying why when the browser's session has just ended."""
    if session_ended():
        flash("Your session has ended or was signed out from another device. "
              "Please log in again.", "info")
    return redirect(url_for("auth.login", next=next_path) if next_path else url_for("auth.login"))


def session_cookie_was_sent() -> bool:
    """Whether the browser presented a session cookie (which may no longer be valid)."""
    return get_manager().name in request.cookies


def start_user_session(session: Session, user: User) -> None:
    """Fill a fresh session for ``user``: the device details the devices page shows.

    The user agent and address are recorded once, at login, so the devices
    page can tell the user's browsers apart.  A new CSRF token goes with the
    new session.
    """
    session.user_id = user.id
    session.data = {
        "email": user.email,
        "user_agent": request.user_agent.string[:512],
        "ip": request.remote_addr or "",
        TOKEN_KEY: new_csrf_token(),
    }


def signup_error(email: str, password: str, confirm: str) -> str | None:
    """What is wrong with a sign-up form, or ``None``."""
    if "@" not in email or len(email) > 254:
        return "Enter a valid e-mail address."
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters."
    if password != confirm:
        return "The two passwords do not match."
    return None


@bp.get("/signup")
def signup_form() -> ResponseReturnValue:
    """The sign-up form."""
    if g.user is not None:
        return redirect(url_for("home.index"))
    return render_template("signup.html", email="", error=None)


@bp.post("/signup")
@with_new_session
def signup(session: Session) -> ResponseReturnValue:
    """Create an account and log it in."""
    email = normalize_email(request.form.get("email", ""))
    password = request.form.get("password", "")
    error = signup_error(email, password, request.form.get("confirm", ""))
    user = None
    if error is None:
        try:
            user = User.create(email=email, password_hash=generate_password_hash(password))
        except peewee.IntegrityError:  # the unique index, also under concurrent sign-ups
            error = "An account with this e-mail address already exists. Log in instead?"
    if user is None:
        return render_template("signup.html", email=email, error=error), 400
    start_user_session(session, user)
    flash("Welcome! Your account is ready.", "success")
    return redirect(url_for("home.index"))


@bp.get("/login")
def login_form() -> ResponseReturnValue:
    """The login form."""
    if g.user is not None:
        return redirect(safe_next(request.args.get("next")))
    return render_template("login.html", email="", error=None, next=request.args.get("next", ""))


def check_credentials(email: str, password: str) -> User | None:
    """The user with this e-mail and password, or ``None`` (as slowly for an unknown e-mail)."""
    user = User.get_or_none(User.email == email)
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


@bp.post("/login")
@with_new_session
def login(session: Session) -> ResponseReturnValue:
    """Check the password; on success the browser gets a new session id."""
    email = normalize_email(request.form.get("email", ""))
    password = request.form.get("password", "")
    user = check_credentials(email, password)
    if user is not None:
        start_user_session(session, user)
        flash("You are logged in.", "success")
        return redirect(safe_next(request.form.get("next")))
    return render_template(
        "login.html", email=email, error="Wrong e-mail address or password.", next=request.form.get("next", "")
    ), 401


@bp.post("/logout")
@with_delete_session
def logout(session: Session) -> ResponseReturnValue:
    """Remove this session from the store and clear the cookie.

    Nothing is flashed: a flash would need a new (anonymous) session, and so
    a new cookie, and a logged-out browser should hold none.
    """
    return redirect(url_for("auth.signed_out"))


@bp.get("/signed-out")
def signed_out() -> ResponseReturnValue:
    """Confirmation page after logout; it writes nothing, so no cookie comes back."""
    return render_template("signed_out.html")
