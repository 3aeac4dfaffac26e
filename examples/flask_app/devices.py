"""'Your devices': every session of the signed-in user, and signing devices out.

Sessions are listed and revoked by their public ``handle`` (a digest of the
secret id), so the page never contains anything that could be used as a cookie.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from kitsession_wsgi import Session
from kitsession_wsgi.flask import (
    current_session,
    get_manager,
    get_sessions_for_user,
    remove_all_sessions_for_user,
    remove_session_by_handle,
)

from .api import API_TOKEN_KIND
from .auth import KEEP_SIGNED_IN_KEY, login_required
from .formatting import describe_user_agent

bp = Blueprint("devices", __name__, url_prefix="/devices")


@dataclass(frozen=True)
class Device:
    """One row of the devices page."""

    handle: str
    browser: str
    user_agent: str
    ip: str
    created_at: float
    last_active: float
    expires_at: float
    is_current: bool
    #: a session handed out by POST /api/token rather than a browser's
    is_token: bool = False
    #: "Keep me signed in" was ticked: the cookie outlives the browser
    kept: bool = False

    @classmethod
    def from_session(cls, session: Session, current_handle: str | None, now: float) -> Device:
        """The row for a listed session; ``is_current`` when it is the requesting browser's.

        The requesting browser is active ``now``: the store records this
        request's activity only when the response is committed, after the page
        is rendered.
        """
        data = session.data
        device = session.device  # recorded by KitSession when the browser signed in
        # (an API token made by create_session, outside a browser's request, keeps its own in its data)
        user_agent = device.user_agent if device is not None else str(data.get("user_agent", ""))
        ip = (device.ip or "") if device is not None else str(data.get("ip", ""))
        is_current = session.handle == current_handle
        is_token = data.get("kind") == API_TOKEN_KIND
        return cls(
            handle=session.handle or "",
            browser="API token" if is_token else describe_user_agent(user_agent),
            user_agent=user_agent,
            ip=ip,
            created_at=session.created_at,
            last_active=now if is_current else (device.last_seen_at if device is not None else session.updated_at),
            expires_at=session.expires_at,
            is_current=is_current,
            is_token=is_token,
            kept=bool(data.get(KEEP_SIGNED_IN_KEY)),
        )


def list_devices() -> list[Device]:
    """The user's devices: this one first, then the most recently active."""
    current_handle = current_session.handle
    now = get_manager().clock()
    devices = [Device.from_session(s, current_handle, now) for s in get_sessions_for_user(g.user.id)]
    devices.sort(key=lambda device: (not device.is_current, -device.last_active))
    return devices


@bp.get("/")
@login_required
def index() -> ResponseReturnValue:
    """The devices page."""
    return render_template("devices.html", devices=list_devices(), idle_timeout=get_manager().idle_timeout)


@bp.post("/revoke")
@login_required
def revoke() -> ResponseReturnValue:
    """Sign out one device, by handle; only a session of the signed-in user is touched."""
    handle = request.form.get("handle", "")
    if handle and handle == current_session.handle:
        flash("To sign out this device, use Log out.", "info")
    elif handle and remove_session_by_handle(handle, user_id=g.user.id):
        flash("That device has been signed out.", "success")
    else:
        flash("That device was already signed out.", "info")
    return redirect(url_for("devices.index"))


@bp.post("/revoke-others")
@login_required
def revoke_others() -> ResponseReturnValue:
    """Sign out every device of the user but this one."""
    removed = remove_all_sessions_for_user(g.user.id, current_session)
    if removed:
        flash(f"Signed out {removed} other device{'s' if removed != 1 else ''}.", "success")
    else:
        flash("No other device was signed in.", "info")
    return redirect(url_for("devices.index"))
