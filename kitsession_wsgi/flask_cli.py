"""``flask kitsession ...``: inspect and manage the current app's server-side sessions.

Times are printed in ISO 8601, UTC (``2026-12-08T01:30:00Z``), in the text and
the ``--json`` output alike.

.. versionadded:: 0.1
.. versionchanged:: 0.2
   ``init-db``; ISO 8601 times instead of Unix seconds; ``stats`` names what it counts, and its
   "expired, waiting for purge" is what ``purge`` removes.
"""

from __future__ import annotations

import datetime as dt
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


def iso_time(timestamp: float) -> str:
    """Unix time as ISO 8601 in UTC, to the second: ``2026-12-08T01:30:00Z``."""
    moment = dt.datetime.fromtimestamp(int(timestamp), dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def counted(count: int, noun: str) -> str:
    """``1 session``, ``2 sessions``, ``0 sessions``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _describe(session: Session) -> dict[str, t.Any]:
    return {
        "handle": session.handle,
        "user_id": session.user_id,
        "created_at": iso_time(session.created_at),
        "updated_at": iso_time(session.updated_at),
        "expires_at": iso_time(session.expires_at),
        "device": None if (device := session.device) is None else {
            "user_agent": device.user_agent, "ip": device.ip, "last_seen_at": iso_time(device.last_seen_at)},
    }


@cli.command("init-db")
def _init_db_command() -> None:
    """Create the store's tables if they are missing (SQL stores; idempotent).

    For a store the application builds itself (``KitSession(app, store=PeeweeStore(db))``):
    constructors have no side effects, so its tables are created here or by
    ``store.create_tables()``.  A store named by ``KITSESSION_STORE`` already gets them
    at ``init_app``; memory, memcached and Redis need nothing.
    """
    store = get_manager().store
    store.create_tables()
    tables = [name for name in (getattr(store, "table_name", None), getattr(store, "lock_table_name", None)) if name]
    click.echo(f"tables ready: {', '.join(tables)}" if tables else
               f"{type(store).__name__} needs no tables: nothing to do")


@cli.command("purge")
def _purge_command() -> None:
    """Remove expired records from the store: sessions past their expiry, and the short-lived
    markers logins and sign-outs leave, once they expire."""
    click.echo(f"purged {counted(get_manager().purge_expired(), 'expired record')}")


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
        device = row["device"]
        seen = "" if device is None else (f" last_seen_at={device['last_seen_at']} ip={device['ip'] or '-'}"
                                          f" user_agent={_json.dumps(device['user_agent'])}")
        click.echo(f"{row['handle']}  user={row['user_id']!s:<12} created_at={row['created_at']} "
                   f"expires_at={row['expires_at']}{seen}")
    click.echo(counted(len(rows), "session"))


@cli.command("revoke")
@click.option("--user", "user", required=True, help="the user whose sessions to remove")
@click.option("--str-id", is_flag=True, help="treat --user as a string even if it is all digits")
def _revoke_command(user: str, str_id: bool) -> None:
    """Remove every session of a user (sign them out everywhere)."""
    removed = get_manager().remove_all_sessions_for_user(_parse_user(user, str_id))
    click.echo(f"revoked {counted(removed, 'session')} of user {user}")


@cli.command("stats")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def _stats_command(as_json: bool) -> None:
    """Live sessions (anonymous, signed in, per user) and the store's other records.

    The store holds live sessions, records past their expiry (sessions, and the
    markers logins, logouts and sign-outs leave behind), and markers not
    expired yet.  "expired, waiting for purge" counts exactly what ``purge``
    removes now: every record whose expiry is past by the manager's clock.
    """
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
    # purge_expired(now) removes the records with expires_at <= now, whatever they hold.
    expired = sum(1 for record in records if record.expires_at <= now)
    stats = {
        "total": len(live),
        "anonymous": anonymous,
        "signed_in": len(live) - anonymous,
        "users": len(per_user),
        "per_user": per_user,
        "records": len(records),
        "expired_waiting_for_purge": expired,
        # Neither live nor expired: markers (and any record the manager would not serve).
        "other_records": max(len(records) - expired - len(live), 0),
    }
    if as_json:
        click.echo(_json.dumps(stats, indent=2))
        return
    click.echo(f"sessions: {len(live)} live ({anonymous} anonymous, {len(live) - anonymous} signed in)")
    click.echo(f"users with a live session: {len(per_user)}")
    for user_id, count in sorted(per_user.items(), key=lambda item: -item[1]):
        click.echo(f"  user {user_id}: {counted(count, 'session')}")
    click.echo(f"expired, waiting for purge: {counted(expired, 'record')} "
               "(what `flask kitsession purge` removes now)")
    click.echo(f"other records: {stats['other_records']} "
               "(markers left by logins and sign-outs, removed by purge once expired)")
    click.echo(f"records in the store: {len(records)}")


@cli.command("migrate")
@click.option("--from", "source_url", default=None, metavar="URL",
              help="the store URL the sessions come from (default: the app's KITSESSION_MIGRATE_FROM)")
def _migrate_command(source_url: str | None) -> None:
    """Move every session from another store to the app's, while the app serves.

    Run it once every worker serves through the move (``KITSESSION_MIGRATE_FROM``
    set to the same URL); afterwards the old store holds nothing and the setting
    can go.  Safe to run again.
    """
    from .errors import ConfigurationError
    from .stores.migrating import MigratingStore

    manager = get_manager()
    store = manager.store
    built = False
    if source_url is not None:
        target = store.target if isinstance(store, MigratingStore) else store
        try:
            store = MigratingStore.from_url(target, source_url, clock=manager.clock)
            built = True
        except ConfigurationError as exc:
            raise click.BadParameter(str(exc), param_hint="--from") from None
    elif not isinstance(store, MigratingStore):
        raise click.UsageError("the app's store is not moving from another one: "
                               "give --from URL or set KITSESSION_MIGRATE_FROM")
    bar: t.Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None or done == 1:
            if bar is not None:
                bar.render_finish()
            bar = click.progressbar(length=total, label="moving sessions")
        bar.update(1)

    try:
        counts = store.drain(progress)
    finally:
        if bar is not None:
            bar.render_finish()
        if built:
            store.source.close()  # opened here; the app's own store stays open
    click.echo(f"moved {counted(counts.moved, 'session')}, {counts.expired} expired removed, "
               f"{counts.skipped} already gone or moved, {counts.remaining} left in the old store")
    if counts.remaining:
        raise SystemExit(1)
