"""Accounts: sign up, log in, log out, and the ``login_required`` guard.

Logging in goes through ``with_new_session``: the visitor's anonymous session
is replaced by a fresh one with a new id (no session fixation), and only when
the view succeeds.  A failed attempt answers 4xx, so nothing is stored and the
anonymous session (with its CSRF token) stays.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import peewee
from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask import session as flask_session
from flask.typing import ResponseReturnValue
from werkzeug.security import check_password_hash, generate_password_hash

from kitsession_wsgi import Session
from kitsession_wsgi.flask import current_session, with_delete_session, with_new_session

from .csrf import TOKEN_KEY, new_csrf_token
from .models import User
from .notes import NOTE_KEY, clean_note

bp = Blueprint("auth", __name__)

View = TypeVar("View", bound=Callable[..., ResponseReturnValue])

MIN_PASSWORD_LENGTH = 8
#: the session key recording whether "Keep me signed in" was ticked (the devices page shows it)
KEEP_SIGNED_IN_KEY = "keep_signed_in"
#: the forms that sign a browser in: a stale one is answered by :func:`already_signed_in` or
#: :func:`stale_account_form`, never with a 400 (see ``csrf.check_csrf_token``)
ACCOUNT_FORMS = frozenset({"auth.login", "auth.signup"})
#: checked against when the e-mail is unknown, so both failures take as long
_DUMMY_HASH = generate_password_hash("not a real password")


def normalize_email(value: str) -> str:
    """The address as stored: trimmed and lower-cased."""
    return value.strip().lower()


def is_control(character: str) -> bool:
    """A control, format, surrogate or private-use character, or a line or paragraph separator."""
    category = unicodedata.category(character)
    return category.startswith("C") or category in ("Zl", "Zp")


def is_local_path(target: str | None) -> bool:
    """Whether ``target`` is a path on this site that every browser reads as one.

    Browsers and werkzeug's ``Location`` handling drop TAB, CR and LF and read
    ``\\`` as ``/``, so ``/<TAB>/evil.example`` or ``/\\evil.example`` would leave
    as ``//evil.example``, another site.  So any control character or
    backslash is refused outright (not cleaned up), then the path must start
    with exactly one ``/`` and parse with no scheme and no host.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return False
    if any(character == "\\" or is_control(character) for character in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site (:func:`is_local_path`), else the home page (no open redirect)."""
    return target if target is not None and is_local_path(target) else url_for("home.index")


def login_required(view: View) -> View:
    """Send anonymous visitors to the login page, then back to where they were going."""

    @functools.wraps(view)
    def wrapper(*args: object, **kwargs: object) -> ResponseReturnValue:
        if g.user is None or current_session.transport == "header":
            # Pages are for browsers: an API token (api.py) does not open them.
            return to_login(request.full_path.rstrip("?"))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def to_login(next_path: str | None = None) -> ResponseReturnValue:
    """Redirect to the login page, coming back to ``next_path`` afterwards.

    Why the browser is signed out, when it was signed in a moment ago, has
    been flashed already (:mod:`examples.flask_app.notices`).
    """
    return redirect(url_for("auth.login", next=next_path) if next_path else url_for("auth.login"))


def start_user_session(session: Session, user: User, *, keep_signed_in: bool = False) -> None:
    """Fill a fresh session for ``user``.

    KitSession records the browser (``session.device``: user agent, truncated
    address, last seen) itself when the login creates the session, so the data
    holds none of it.  A new CSRF token goes with the
    new session.  ``keep_signed_in`` ("Keep me signed in") makes the session
    permanent in Flask's sense: its cookie carries an expiry and outlives the
    browser; otherwise the cookie ends when the browser closes.  Either way
    the server ends the session after the idle timeout or the maximum age.
    """
    session.user_id = user.id
    session.data = {
        "email": user.email,
        KEEP_SIGNED_IN_KEY: keep_signed_in,
        TOKEN_KEY: new_csrf_token(),
    }
    # flask.session is the fresh session inside a with_new_session view; set after the data,
    # which the assignment above replaced.
    flask_session.permanent = keep_signed_in


def already_signed_in() -> ResponseReturnValue:
    """A signed-in browser posted a login or sign-up form (opened in another tab before it logged in)."""
    flash(f"You are already signed in as {g.user.email}.", "info")
    return redirect(safe_next(request.form.get("next")))


def stale_account_form() -> ResponseReturnValue:
    """A login or sign-up form whose token is not this browser's session's (a new one since).

    Not signed in, so no account is at stake: the same form again, with a
    fresh token and what was typed (never the password), asking to send it again.
    """
    email = normalize_email(request.form.get("email", ""))
    message = "This form had expired. Please send it again."
    if request.endpoint == "auth.signup":
        return render_template("signup.html", email=email, error=message,
                               keep_signed_in=request.form.get("keep_signed_in") == "1")
    return render_login(email=email, error=message, next_path=request.form.get("next"),
                        note=request.form.get("note"))


def render_login(*, email: str = "", error: str | None = None, next_path: str | None = None,
                 note: str | None = None, notice: str | None = None,
                 keep_signed_in: bool = False) -> str:
    """The login page; ``note`` is a note the browser was saving when it found itself signed out,
    carried through the login (a hidden field) and saved in the new session."""
    return render_template(
        "login.html", email=email, error=error, notice=notice,
        next=next_path if is_local_path(next_path) else "",
        note=clean_note(note), keep_signed_in=keep_signed_in,
    )


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
    return render_template("signup.html", email="", error=None, keep_signed_in=False)


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
    keep_signed_in = request.form.get("keep_signed_in") == "1"
    if user is None:
        return render_template("signup.html", email=email, error=error, keep_signed_in=keep_signed_in), 400
    start_user_session(session, user, keep_signed_in=keep_signed_in)
    flash("Welcome! Your account is ready.", "success")
    return redirect(url_for("home.index"))


@bp.get("/login")
def login_form() -> ResponseReturnValue:
    """The login form (a signed-in browser goes on to ``next`` at once)."""
    if g.user is not None:
        return redirect(safe_next(request.args.get("next")))
    return render_login(next_path=request.args.get("next"))


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
    """Check the password; on success the browser gets a new session id.

    A note carried by the form (the browser was saving one when it found
    itself signed out) is saved in the new session.
    """
    email = normalize_email(request.form.get("email", ""))
    password = request.form.get("password", "")
    keep_signed_in = request.form.get("keep_signed_in") == "1"
    note = clean_note(request.form.get("note"))
    user = check_credentials(email, password)
    if user is None:
        return render_login(email=email, error="Wrong e-mail address or password.",
                            next_path=request.form.get("next"), note=note, keep_signed_in=keep_signed_in), 401
    start_user_session(session, user, keep_signed_in=keep_signed_in)
    if note:
        flask_session[NOTE_KEY] = note
        flash("You are logged in, and your note is saved.", "success")
    else:
        flash("You are logged in.", "success")
    return redirect(safe_next(request.form.get("next")))


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
