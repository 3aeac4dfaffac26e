"""``flask kitsession ...``: list, revoke, purge and stats against a real MemoryStore."""

from __future__ import annotations

import json
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


def invoke(world: Fixture, *args: str) -> Result:
    runner: FlaskCliRunner = world.app.test_cli_runner()
    result = runner.invoke(args=["kitsession", *args])
    assert result.exception is None, result.output
    assert result.exit_code == 0, result.output
    return result


def listed_handles(output: str) -> list[str]:
    """Handles of the text listing: the first word of each row (the last line is the count)."""
    *rows, summary = output.strip().splitlines()
    assert summary == f"{len(rows)} sessions"
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
        assert set(row) == {"handle", "user_id", "created_at", "updated_at", "expires_at"}
        assert row["user_id"] == session.user_id, name
        assert row["created_at"] == session.created_at
        assert row["expires_at"] == session.created_at + MAX_AGE
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
    assert result.output.strip() == f"revoked {len(removed)} sessions of user {args[1]}"
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
    assert invoke(world, "purge").output.strip() == "purged 0 expired sessions"
    assert len(world.store) == 6

    world.clock.advance(MAX_AGE - 4)  # the three oldest (created 6, 5, 4 s ago) are past expiry now
    assert len(world.store) == 6, "expired records wait for purge"
    assert invoke(world, "purge").output.strip() == "purged 3 expired sessions"
    assert {r.key for r in world.store.get_all()} == world.handles("str-five", "alice", "anonymous")

    world.clock.advance(MAX_AGE)
    assert invoke(world, "purge").output.strip() == "purged 3 expired sessions"
    assert len(world.store) == 0


# -- stats ------------------------------------------------------------------------------------


def test_stats_text(world: Fixture) -> None:
    lines = invoke(world, "stats").output.strip().splitlines()
    assert lines[0] == "sessions: 6 (1 anonymous, 4 users)"
    assert sorted(lines[1:-1]) == sorted(['  user 5: 2', '  user 6: 1', '  user "5": 1', '  user "alice": 1'])
    assert lines[-1] == "expired, waiting for purge: 0"


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
    assert invoke(world, "purge").output.strip() == "purged 0 expired sessions"
    world.clock.advance(MAX_AGE + 1)
    stats = json.loads(invoke(world, "stats", "--json").output)
    waiting = stats["expired_waiting_for_purge"]
    assert waiting == len(world.store.get_all()) and waiting >= 6
    assert invoke(world, "purge").output.strip() == f"purged {waiting} expired sessions"
