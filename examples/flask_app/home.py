"""The home page: ``flask.session`` and ``flash()`` work as usual, stored server-side."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from kitsession_wsgi.flask import current_session, get_manager

from .auth import KEEP_SIGNED_IN_KEY, render_login, to_login
from .notes import MAX_NOTE_LENGTH, NOTE_KEY, clean_note

bp = Blueprint("home", __name__)


@bp.get("/")
def index() -> ResponseReturnValue:
    """Landing page for visitors; for a signed-in user, a visit counter and a note kept in the session."""
    if g.user is None:
        return render_template("landing.html")
    session["visits"] = session.get("visits", 0) + 1
    manager = get_manager()
    return render_template(
        "home.html",
        visits=session["visits"],
        note=session.get(NOTE_KEY, ""),
        max_note_length=MAX_NOTE_LENGTH,
        session_info=current_session,
        keep_signed_in=bool(session.get(KEEP_SIGNED_IN_KEY)),
        idle_timeout=manager.idle_timeout,
        max_age=manager.max_age,
    )


@bp.post("/note")
def save_note() -> ResponseReturnValue:
    """Keep a short note in the session (it follows this device, not the account).

    A browser that was signed out meanwhile (logged out in another tab,
    signed out from another device, expired) gets the login page with the
    note it typed, carried through the login and saved then.
    """
    note = clean_note(request.form.get("note"))
    if current_session.transport == "header":
        return to_login()  # pages are for browsers: an API token does not open them
    if g.user is None:
        return render_login(
            next_path=url_for("home.index"), note=note,
            notice="You are signed out, so your note was not saved yet. Log in and it will be.",
        )
    if note:
        session[NOTE_KEY] = note
        flash("Note saved in this session.", "success")
    else:
        session.pop(NOTE_KEY, None)
        flash("Note cleared.", "info")
    return redirect(url_for("home.index"))
