"""The home page: ``flask.session`` and ``flash()`` work as usual, stored server-side."""

from __future__ import annotations

from flask import Blueprint, flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from kitsession_wsgi.flask import current_session

from .auth import login_required

bp = Blueprint("home", __name__)

MAX_NOTE_LENGTH = 200


@bp.get("/")
def index() -> ResponseReturnValue:
    """Landing page for visitors; for a signed-in user, a visit counter and a note kept in the session."""
    if g.user is None:
        return render_template("landing.html")
    session["visits"] = session.get("visits", 0) + 1
    return render_template(
        "home.html", visits=session["visits"], note=session.get("note", ""), session_info=current_session
    )


@bp.post("/note")
@login_required
def save_note() -> ResponseReturnValue:
    """Keep a short note in the session (it follows this device, not the account)."""
    note = request.form.get("note", "").strip()[:MAX_NOTE_LENGTH]
    if note:
        session["note"] = note
        flash("Note saved in this session.", "success")
    else:
        session.pop("note", None)
        flash("Note cleared.", "info")
    return redirect(url_for("home.index"))
