"""``flask kitsession ...``: inspect and manage the current app's server-side sessions.

.. versionadded:: 0.1
"""

from __future__ import annotations

import json as _json
import typing as t

import click
from flask.cli import AppGroup

from .errors import InvalidUserId
from .session import USER_ID_MAX_BYTES, Session, require_user_id
from .flask._state import get_manager
from .stores.base import UserId

__all__ = ["cli"]


cli = AppGroup("kitsession", help="Inspect and manage server-side sessions.")


def _parse_user(value: str, as_string: bool) -> UserId:
    if not value:
        raise click.BadParameter("must not be empty", param_hint="--user")
    if not as_string and value.lstrip("-").isdigit() and len(value) <= USER_ID_MAX_BYTES:
        return int(value)  # (longer digit strings stay text, refused below: no int() past its limit)
    try:
        return require_user_id(value, what="--user")
    except InvalidUserId as exc:
        raise click.BadParameter(str(exc), param_hint="--user") from None


def _describe(session: Session) -> dict[str, t.Any]:
    return {
        "handle": session.handle,
        "user_id": session.user_id,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
        "expires_at": session.expires_at,
    }


@cli.command("purge")
def _purge_command() -> None:
    """Remove expired sessions from the store."""
    click.echo(f"purged {get_manager().purge_expired()} expired sessions")


@cli.command("list")
@click.option("--user", "user", default=None, help="only this user's sessions")
@click.option("--str-id", is_flag=True, help="treat --user as a string even if it is all digits")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def _list_command(user: str | None, str_id: bool, as_json: bool) -> None:
    """List live sessions (handles, never ids)."""
    manager = get_manager()
    sessions = (manager.get_all_sessions() if user is None
                else manager.get_sessions_for_user(_parse_user(user, str_id)))
    rows = [_describe(s) for s in sessions]
    if as_json:
        click.echo(_json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['handle']}  user={row['user_id']!s:<12} expires_at={row['expires_at']:.0f}")
    click.echo(f"{len(rows)} sessions")


@cli.command("revoke")
@click.option("--user", "user", required=True, help="the user whose sessions to remove")
@click.option("--str-id", is_flag=True, help="treat --user as a string even if it is all digits")
def _revoke_command(user: str, str_id: bool) -> None:
    """Remove every session of a user (sign them out everywhere)."""
    removed = get_manager().remove_all_sessions_for_user(_parse_user(user, str_id))
    click.echo(f"revoked {removed} sessions of user {user}")


@cli.command("stats")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def _stats_command(as_json: bool) -> None:
    """Sessions in total, per user, and expired ones waiting for purge."""
    manager = get_manager()
    records = manager.store.get_all()
    now = manager.clock()
    live = manager.get_all_sessions()
    per_user: dict[str, int] = {}
    anonymous = 0
    for session in live:
        if session.user_id is None:
            anonymous += 1
        else:
            # JSON text keeps user 5 and user "5" apart, as the stores do.
            label = _json.dumps(session.user_id)
            per_user[label] = per_user.get(label, 0) + 1
    stats = {
        "total": len(live),
        "anonymous": anonymous,
        "users": len(per_user),
        "per_user": per_user,
        # What purge_expired() would remove now: records past their stored expiry (the core's
        # short-lived markers included once they expire, never before).
        "expired_waiting_for_purge": sum(1 for record in records if now >= record.expires_at),
    }
    if as_json:
        click.echo(_json.dumps(stats, indent=2))
        return
    click.echo(f"sessions: {stats['total']} ({anonymous} anonymous, {len(per_user)} users)")
    for user_id, count in sorted(per_user.items(), key=lambda item: -item[1]):
        click.echo(f"  user {user_id}: {count}")
    click.echo(f"expired, waiting for purge: {stats['expired_waiting_for_purge']}")
