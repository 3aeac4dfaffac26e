"""``flask kitsession ...``: list, revoke, purge and stats against a real MemoryStore."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import Result
from flask import Flask, jsonify
from flask.testing import FlaskCliRunner

from kitsession_wsgi import MemoryStore, Session
from kitsession_wsgi.flask import KitSession, create_session, current_session, set_session_cookie
from kitsession_wsgi.stores.base import UserId

from clocks import FakeClock
from session_helpers import live_records, parse_set_cookie

MAX_AGE = 3600


@dataclass
class Fixture:
    app: Flask
    store: MemoryStore
    clock: FakeClock
    sessions: dict[str, Session]

    def handles(self, *names: str) -> set[str]:
        return {self.sessions[name].handle for name in names}  # type: ignore[misc]


@pytest.fixture
def world(clock: FakeClock) -> Fixture:
    """Six live sessions: user 5 twice, user 6, user "5" (a str), user "alice", one anonymous."""
    store = MemoryStore()
    app = Flask(__name__)
    app.config.update(SECRET_KEY="cli-secret", KITSESSION_MAX_AGE=MAX_AGE)
    KitSession(app, store=store, clock=clock)

    @app.route("/whoami")
    def whoami() -> Any:
        return jsonify(user_id=current_session.user_id)

    sessions: dict[str, Session] = {}
    rows: list[tuple[str, UserId | None, dict[str, Any]]] = [
        ("five-a", 5, {"device": "phone"}),
        ("five-b", 5, {"device": "laptop"}),
        ("six", 6, {}),
        ("str-five", "5", {}),
        ("alice", "alice", {}),
        ("anonymous", None, {"cart": ["apple"]}),
    ]
    with app.app_context():
        for name, user_id, data in rows:
            sessions[name] = create_session(user_id=user_id, data=data)
            clock.advance(1)
    return Fixture(app, store, clock, sessions)


def iso(timestamp: float) -> str:
    """What the CLI prints for a time: ISO 8601, UTC, to the second."""
    return dt.datetime.fromtimestamp(int(timestamp), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def invoke(world: Fixture, *args: str) -> Result:
    runner: FlaskCliRunner = world.app.test_cli_runner()
    result = runner.invoke(args=["kitsession", *args])
    assert result.exception is None, result.output
    assert result.exit_code == 0, result.output
    return result


def listed_handles(output: str) -> list[str]:
    """Handles of the text listing: the first word of each row (the last line is the count)."""
    *rows, summary = output.strip().splitlines()
    assert summary == f"{len(rows)} session{'' if len(rows) == 1 else 's'}"
    return [row.split()[0] for row in rows]


def assert_no_secret_ids(world: Fixture, output: str) -> None:
    for session in world.sessions.values():
        assert session.id is not None and session.id not in output, "a secret id was printed"


# -- list -------------------------------------------------------------------------------------


def test_list_shows_every_live_session_oldest_first_without_ids(world: Fixture) -> None:
    result = invoke(world, "list")
    handles = listed_handles(result.output)
    assert handles == [world.sessions[name].handle for name in
                       ("five-a", "five-b", "six", "str-five", "alice", "anonymous")]
    assert_no_secret_ids(world, result.output)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["--user", "5"], ("five-a", "five-b"), id="int-user"),
        pytest.param(["--user", "5", "--str-id"], ("str-five",), id="str-id-flag-keeps-5-and-str-5-apart"),
        pytest.param(["--user", "alice"], ("alice",), id="str-user"),
        pytest.param(["--user", "6"], ("six",), id="other-int-user"),
        pytest.param(["--user", "404"], (), id="unknown-user"),
    ],
)
def test_list_for_one_user(world: Fixture, args: list[str], expected: tuple[str, ...]) -> None:
    result = invoke(world, "list", *args)
    assert set(listed_handles(result.output)) == world.handles(*expected)


def test_list_json_is_parseable_and_complete(world: Fixture) -> None:
    rows = json.loads(invoke(world, "list", "--json").output)
    assert isinstance(rows, list) and len(rows) == 6
    by_handle = {row["handle"]: row for row in rows}
    assert set(by_handle) == world.handles(*world.sessions)
    for name, session in world.sessions.items():
        row = by_handle[session.handle]
        assert set(row) == {"handle", "user_id", "created_at", "updated_at", "expires_at", "device"}
        assert row["user_id"] == session.user_id, name
        assert row["created_at"] == iso(session.created_at)
        assert row["expires_at"] == iso(session.created_at + MAX_AGE)
    assert type(by_handle[world.sessions["five-a"].handle]["user_id"]) is int
    assert type(by_handle[world.sessions["str-five"].handle]["user_id"]) is str


def test_list_json_for_one_user(world: Fixture) -> None:
    rows = json.loads(invoke(world, "list", "--user", "5", "--json").output)
    assert {row["handle"] for row in rows} == world.handles("five-a", "five-b")
    assert {row["user_id"] for row in rows} == {5}


def test_list_hides_expired_sessions(world: Fixture) -> None:
    world.clock.advance(MAX_AGE - 4)  # five-a, five-b, six were created 6, 5, 4 seconds before "now"
    assert set(listed_handles(invoke(world, "list").output)) == world.handles("str-five", "alice", "anonymous")


# -- revoke -----------------------------------------------------------------------------------


def test_revoke_user_removes_all_their_sessions_and_nothing_else(world: Fixture) -> None:
    client = world.app.test_client()
    with world.app.app_context():
        client.set_cookie("session", parse_set_cookie(set_session_cookie(world.sessions["five-a"])).raw_value)
    assert client.get("/whoami").json == {"user_id": 5}

    result = invoke(world, "revoke", "--user", "5")
    assert result.output.strip() == "revoked 2 sessions of user 5"
    assert len(live_records(world.store)) == 4  # and user 5's revocation marker
    assert set(listed_handles(invoke(world, "list").output)) == world.handles("six", "str-five", "alice", "anonymous")
    assert client.get("/whoami").json == {"user_id": None}, "a revoked session no longer loads"

    again = invoke(world, "revoke", "--user", "5")
    assert again.output.strip() == "revoked 0 sessions of user 5"


@pytest.mark.parametrize(
    ("args", "removed", "left"),
    [
        pytest.param(["--user", "5", "--str-id"], ["str-five"], 5, id="str-5-only"),
        pytest.param(["--user", "alice"], ["alice"], 5, id="str-user"),
        pytest.param(["--user", "999"], [], 6, id="unknown-user"),
    ],
)
def test_revoke_other_users(world: Fixture, args: list[str], removed: list[str], left: int) -> None:
    result = invoke(world, "revoke", *args)
    noun = "session" if len(removed) == 1 else "sessions"
    assert result.output.strip() == f"revoked {len(removed)} {noun} of user {args[1]}"
    assert len(live_records(world.store)) == left
    for name in removed:
        assert world.store.get(world.sessions[name].handle) is None  # type: ignore[arg-type]


def test_revoke_requires_user(world: Fixture) -> None:
    result = world.app.test_cli_runner().invoke(args=["kitsession", "revoke"])
    assert result.exit_code != 0
    assert "--user" in result.output
    assert len(world.store) == 6


# -- purge ------------------------------------------------------------------------------------


def test_purge_removes_only_expired_sessions_by_the_managers_clock(world: Fixture) -> None:
    assert invoke(world, "purge").output.strip() == "purged 0 expired records"
    assert len(world.store) == 6

    world.clock.advance(MAX_AGE - 4)  # the three oldest (created 6, 5, 4 s ago) are past expiry now
    assert len(world.store) == 6, "expired records wait for purge"
    assert invoke(world, "purge").output.strip() == "purged 3 expired records"
    assert {r.key for r in world.store.get_all()} == world.handles("str-five", "alice", "anonymous")

    world.clock.advance(MAX_AGE)
    assert invoke(world, "purge").output.strip() == "purged 3 expired records"
    assert len(world.store) == 0


# -- stats ------------------------------------------------------------------------------------


def test_stats_text(world: Fixture) -> None:
    lines = invoke(world, "stats").output.strip().splitlines()
    assert lines[0] == "sessions: 6 live (1 anonymous, 5 signed in)"
    assert lines[1] == "users with a live session: 4"
    assert lines[2] == "  user 5: 2 sessions"
    assert sorted(lines[3:6]) == sorted(['  user 6: 1 session', '  user "5": 1 session', '  user "alice": 1 session'])
    assert lines[6:] == [
        "expired, waiting for purge: 0 records (what `flask kitsession purge` removes now)",
        "other records: 0 (markers left by logins and sign-outs, removed by purge once expired)",
        "records in the store: 6",
    ]


def test_stats_json_counts_and_expired_waiting(world: Fixture) -> None:
    world.clock.advance(MAX_AGE - 4)
    stats = json.loads(invoke(world, "stats", "--json").output)
    assert stats["total"] == 3
    assert stats["anonymous"] == 1
    assert stats["expired_waiting_for_purge"] == 3
    invoke(world, "purge")
    assert json.loads(invoke(world, "stats", "--json").output)["expired_waiting_for_purge"] == 0


def test_stats_json_keeps_int_and_str_user_ids_apart(world: Fixture) -> None:
    """Regression: per_user was keyed by str(user_id), merging user 5 and user '5'."""
    stats = json.loads(invoke(world, "stats", "--json").output)
    assert stats["total"] == 6 and stats["anonymous"] == 1
    assert stats["users"] == 4, "5, '5', 6 and 'alice' are four users"
    assert sum(stats["per_user"].values()) == 5


@pytest.mark.parametrize("command", ["list", "revoke"])
def test_empty_user_is_a_usage_error(world: Fixture, command: str) -> None:
    """Regression: an empty --user ended in a ValueError traceback."""
    result = world.app.test_cli_runner().invoke(args=["kitsession", command, "--user", ""])
    assert result.exit_code == 2, (result.exit_code, repr(result.exception))
    assert "--user" in result.output
    assert len(world.store) == 6


def test_stats_counts_only_what_purge_would_remove(world: Fixture) -> None:
    """Regression: unexpired "replaced" markers (left by a login or regenerate) were counted as
    expired sessions waiting for purge (it said 2 while purge removed 0)."""
    with world.app.app_context():
        manager = world.app.extensions["kitsession"].manager
        for name in ("five-a", "six"):
            manager.regenerate(world.sessions[name])
    stats = json.loads(invoke(world, "stats", "--json").output)
    assert stats["total"] == 6 and stats["expired_waiting_for_purge"] == 0
    assert invoke(world, "purge").output.strip() == "purged 0 expired records"
    world.clock.advance(MAX_AGE + 1)
    stats = json.loads(invoke(world, "stats", "--json").output)
    waiting = stats["expired_waiting_for_purge"]
    assert waiting == len(world.store.get_all()) and waiting >= 6
    assert invoke(world, "purge").output.strip() == f"purged {waiting} expired records"


# -- what the output says: ISO times, plurals, stats that agree with purge ------------------------

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def test_times_are_iso_8601_utc() -> None:
    from kitsession_wsgi.flask_cli import iso_time

    assert iso_time(1797289666) == "2026-12-14T23:07:46Z"
    assert iso_time(1797289666.9) == "2026-12-14T23:07:46Z"
    assert iso_time(0) == "1970-01-01T00:00:00Z"


def test_list_prints_iso_times_not_unix_seconds(world: Fixture) -> None:
    """Regression: rows read ``expires_at=1797289666``."""
    output = invoke(world, "list", "--user", "6").output
    row = output.splitlines()[0]
    session = world.sessions["six"]
    assert f"created_at={iso(session.created_at)}" in row
    assert f"expires_at={iso(session.created_at + MAX_AGE)}" in row
    assert str(int(session.expires_at)) not in output and str(int(session.created_at)) not in output
    for row in json.loads(invoke(world, "list", "--json").output):
        for key in ("created_at", "updated_at", "expires_at"):
            assert ISO_UTC.fullmatch(row[key]), row


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["revoke", "--user", "6"], "revoked 1 session of user 6", id="revoke-one"),
        pytest.param(["revoke", "--user", "5"], "revoked 2 sessions of user 5", id="revoke-two"),
        pytest.param(["revoke", "--user", "404"], "revoked 0 sessions of user 404", id="revoke-none"),
        pytest.param(["list", "--user", "6"], "1 session", id="list-one"),
        pytest.param(["list", "--user", "404"], "0 sessions", id="list-none"),
    ],
)
def test_counts_have_the_right_plural(world: Fixture, args: list[str], expected: str) -> None:
    """Regression: "revoked 1 sessions"."""
    assert invoke(world, *args).output.strip().splitlines()[-1] == expected


def test_purge_of_one_record_is_singular(world: Fixture) -> None:
    world.clock.advance(MAX_AGE - 6)  # five-a was created 6 s before "now": only it has expired
    assert invoke(world, "purge").output.strip() == "purged 1 expired record"


def stats_waiting(world: Fixture) -> int:
    """The text output's "expired, waiting for purge" number."""
    (line,) = [line for line in invoke(world, "stats").output.splitlines() if line.startswith("expired, waiting")]
    match = re.fullmatch(r"expired, waiting for purge: (\d+) records? \(.*\)", line)
    assert match, line
    return int(match.group(1))


def test_stats_then_purge_agree_through_logins_revocations_and_expiry(world: Fixture) -> None:
    """Regression: ``stats`` said "expired, waiting for purge: 37" with no word of what it counted.

    At each step stats is read, then purge run: purge removes exactly the number stats gave,
    whatever the store holds (sessions, the markers logins and revocations leave, both expired).
    """
    from kitsession_wsgi.manager import REPLACED_MARKER_SECONDS

    manager = world.app.extensions["kitsession"].manager
    with world.app.app_context():
        for name in ("five-a", "six", "anonymous"):
            manager.regenerate(world.sessions[name])  # each leaves a short-lived "replaced" marker
    invoke(world, "revoke", "--user", "alice")  # leaves alice's revocation marker
    steps = [0, REPLACED_MARKER_SECONDS + 1, MAX_AGE - REPLACED_MARKER_SECONDS - 8, 3, 3 * MAX_AGE]
    purged = []
    for step in steps:
        world.clock.advance(step)
        stats = json.loads(invoke(world, "stats", "--json").output)
        waiting = stats_waiting(world)
        assert stats["expired_waiting_for_purge"] == waiting
        assert stats["records"] == len(world.store.get_all())
        assert stats["records"] == stats["total"] + waiting + stats["other_records"]
        assert invoke(world, "purge").output.strip() == (
            f"purged {waiting} expired record{'' if waiting == 1 else 's'}")
        if step == 0:
            assert stats["total"] == 5 and stats["other_records"] == 4, "3 replaced markers, 1 revocation marker"
        purged.append(waiting)
        assert stats_waiting(world) == 0
    assert purged[0] == 0, "nothing has expired yet: the fresh markers are not counted"
    assert purged[1] == 3, "the replaced markers, a minute on"
    assert sum(purged) == 5 + 3 + 1, "five sessions, three replaced markers, alice's revocation marker"
    assert len(world.store) == 0
