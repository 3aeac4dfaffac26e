"""Device metadata: what ``record_ip`` keeps of the client address, the user-agent cut, the option's checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask import session as flask_session
from werkzeug.test import Client

from kitsession_wsgi import ConfigurationError, Device, MemoryStore, SessionManager, SessionRecord, SessionStore
from kitsession_wsgi._device import (
    USER_AGENT_LIMIT,
    cut_user_agent,
    device_from_environ,
    recorded_ip,
    split_device,
    stored_device,
    with_device,
)
from kitsession_wsgi.flask import KitSession, get_manager
from kitsession_wsgi.wsgi import SessionMiddleware, request_session, with_new_session

from session_helpers import CountingStore
from store_kinds import STORE_KINDS, open_store, store_servers  # noqa: F401 (store_servers is a fixture)

KEY = "k" * 32


@pytest.mark.parametrize(("address", "kept"), [
    ("203.0.113.77", "203.0.113.0"),
    ("203.0.113.0", "203.0.113.0"),
    ("10.1.2.255", "10.1.2.0"),
    ("::ffff:203.0.113.77", "203.0.113.0"),  # an IPv4 client seen through a dual-stack socket
    ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::"),
    ("2001:db8:abcd:ffff::1", "2001:db8:abcd::"),
    ("::1", "::"),
])
def test_truncated_keeps_the_network_only(address: str, kept: str) -> None:
    assert recorded_ip(address, "truncated") == kept


@pytest.mark.parametrize(("address", "kept"), [
    ("203.0.113.77", "203.0.113.77"),
    ("2001:0db8:abcd:0012:0001:0002:0003:0004", "2001:db8:abcd:12:1:2:3:4"),
])
def test_full_keeps_the_address(address: str, kept: str) -> None:
    assert recorded_ip(address, "full") == kept


def test_none_keeps_nothing() -> None:
    assert recorded_ip("203.0.113.77", "none") is None
    assert recorded_ip("2001:db8::1", "none") is None


@pytest.mark.parametrize("address", ["", "unknown", "203.0.113", "999.1.1.1", "1.2.3.4, 5.6.7.8", None, 17])
@pytest.mark.parametrize("mode", ["truncated", "full"])
def test_what_is_no_address_is_not_recorded(address: object, mode: str) -> None:
    assert recorded_ip(address, mode) is None


def test_user_agent_is_cut_to_256_characters() -> None:
    assert USER_AGENT_LIMIT == 256
    long = "Mozilla/5.0 " + "x" * 1000
    assert cut_user_agent(long) == long[:256]
    assert len(cut_user_agent(long)) == 256
    assert cut_user_agent("a" * 256) == "a" * 256
    assert cut_user_agent("curl/8.0") == "curl/8.0"
    assert cut_user_agent(None) == ""


def test_device_from_environ() -> None:
    environ = {"HTTP_USER_AGENT": "U" * 300, "REMOTE_ADDR": "198.51.100.9"}
    assert device_from_environ(environ, "truncated", 1000.0) == Device(
        user_agent="U" * 256, ip="198.51.100.0", created_at=1000.0, last_seen_at=1000.0)
    assert device_from_environ(environ, "full", 5.0).ip == "198.51.100.9"
    assert device_from_environ(environ, "none", 5.0).ip is None
    assert device_from_environ({}, "truncated", 5.0) == Device(user_agent="", ip=None, created_at=5.0,
                                                               last_seen_at=5.0)


def test_record_ip_defaults_to_truncated_and_is_checked() -> None:
    assert SessionManager(MemoryStore(), keys=KEY).record_ip == "truncated"
    for mode in ("truncated", "full", "none"):
        assert SessionManager(MemoryStore(), keys=KEY, record_ip=mode).record_ip == mode
    for bad in ("FULL", "partial", "", None, True, 24):
        with pytest.raises(ConfigurationError) as caught:
            SessionManager(MemoryStore(), keys=KEY, record_ip=bad)
        assert caught.value.option == "record_ip"


def test_flask_reads_kitsession_record_ip() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY, KITSESSION_RECORD_IP="full")
    KitSession(app, store=MemoryStore())
    with app.test_request_context("/"):
        assert get_manager().record_ip == "full"


def test_flask_refuses_a_bad_record_ip() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY, KITSESSION_RECORD_IP="half")
    with pytest.raises(ConfigurationError) as caught:
        KitSession(app, store=MemoryStore())
    assert caught.value.option == "record_ip"


# -- the stored form: the device rides in the data text, which every store keeps as it is --

@pytest.mark.parametrize("data", ["{}", '{"a":1}', '{"user_id":5,"cart":[1,2],"s":"\\u00e9"}', '{"\\u0000x":1}'])
@pytest.mark.parametrize(("user_agent", "ip"), [
    ("Mozilla/5.0", "203.0.113.0"), ("", None), ('quote " and \\ and é and \ud800', "2001:db8:abcd::"),
])
def test_the_device_splits_off_the_data_text_byte_for_byte(data: str, user_agent: str, ip: str | None) -> None:
    text = with_device(data, user_agent, ip)
    loaded = json.loads(text)
    assert list(loaded)[0] == "\x00device"  # still one JSON object, the device its first member
    assert split_device(text) == ((user_agent, ip), data)


@pytest.mark.parametrize("text", [
    "{}", '{"a":1}', '{"\\u0000device":', '{"\\u0000device":["ua"]}', '{"\\u0000device":["ua",3]}',
    '{"\\u0000device":["ua",null]', '{"\\u0000device":["ua",null]x', '{"\\u0000device":["ua",null],',
    '{"\\u0000device":["ua",null]}}', '{"\\u0000device":"ua"}',
])
def test_text_without_a_whole_device_is_handed_back(text: str) -> None:
    assert split_device(text) == (None, text)


def test_stored_device_takes_its_times_from_the_record() -> None:
    assert stored_device(with_device('{"a":1}', "UA", "198.51.100.0"), 10.0, 25.0) == Device(
        user_agent="UA", ip="198.51.100.0", created_at=10.0, last_seen_at=25.0)
    assert stored_device('{"a":1}', 10.0, 25.0) is None


@pytest.fixture(params=[k for k in STORE_KINDS if k in ("memory", "sqlite", "redis", "memcached")])
def store(request: pytest.FixtureRequest, tmp_path: Path, store_servers: Any) -> Iterator[SessionStore]:
    with open_store(request.param, tmp_path, store_servers) as opened:
        yield opened


def test_every_store_round_trips_the_device_and_a_touch_moves_last_seen(store: SessionStore) -> None:
    text = with_device('{"user_id":"alice","n":1}', "Mozilla/5.0 " + "é" * 244, "2001:db8:abcd::")
    record = SessionRecord(key="k" * 43, data=text, user_id="alice", created_at=100.0, updated_at=100.0,
                           expires_at=10_000_000_000.0)
    assert store.create(record)
    assert store.touch(record.key, 160.0, 10_000_000_100.0)
    for got in (store.get(record.key), *store.get_all(), *store.get_all_for_user("alice")):
        assert got is not None
        assert stored_device(got.data, got.created_at, got.updated_at) == Device(
            user_agent="Mozilla/5.0 " + "é" * 244, ip="2001:db8:abcd::", created_at=100.0, last_seen_at=160.0)
        assert split_device(got.data)[1] == '{"user_id":"alice","n":1}'


# -- recorded by the adapters, carried by listings, last seen moved by the touch -----------

class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def device_app(manager: SessionManager) -> Client:
    @with_new_session
    def login(environ: Any, start_response: Any, session: Any) -> list[bytes]:
        session.user_id = "alice"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"in"]

    def application(environ: Any, start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        if path == "/with-new-session":
            return login(environ, start_response)
        session = request_session(environ)
        if path == "/login":
            session.login(user_id="alice")
        elif path == "/visit":
            session.session.data["n"] = 1
        elif path == "/locked-visit":
            session.lock().data["n"] = 1
        elif path == "/read":
            session.session.data.get("n")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return Client(SessionMiddleware(application, manager))


def get(client: Client, path: str, *, ip: str = "203.0.113.77", agent: str = "Firefox/140") -> None:
    response = client.get(path, base_url="https://localhost", headers={"User-Agent": agent},
                          environ_base={"REMOTE_ADDR": ip})
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/visit", "/login", "/with-new-session"])
def test_recorded_when_a_request_creates_or_logs_in_a_session(path: str) -> None:
    store = MemoryStore()
    clock = Clock()
    manager = SessionManager(store, keys=KEY, clock=clock)
    client = device_app(manager)
    get(client, path, agent="A" * 300)
    (session,) = manager.get_all_sessions()
    assert session.device == Device(user_agent="A" * 256, ip="203.0.113.0", created_at=clock.now,
                                    last_seen_at=clock.now)


def test_a_login_records_the_browser_that_logs_in() -> None:
    manager = SessionManager(MemoryStore(), keys=KEY, clock=Clock(), record_ip="full")
    client = device_app(manager)
    get(client, "/visit", ip="198.51.100.1", agent="before")
    get(client, "/login", ip="2001:db8:abcd:12::9", agent="after")
    (session,) = manager.get_sessions_for_user("alice")
    assert session.device is not None
    assert (session.device.user_agent, session.device.ip) == ("after", "2001:db8:abcd:12::9")


def test_none_records_no_ip_and_writes_keep_the_device() -> None:
    manager = SessionManager(MemoryStore(), keys=KEY, clock=Clock(), record_ip="none")
    client = device_app(manager)
    get(client, "/login")
    get(client, "/visit", agent="other browser, same cookie")  # a write of the data keeps the device
    (session,) = manager.get_all_sessions()
    assert session.data == {"n": 1}  # the device is no data of the application's
    assert session.device is not None
    assert (session.device.user_agent, session.device.ip) == ("Firefox/140", None)


def test_a_manager_session_without_a_request_has_no_device() -> None:
    manager = SessionManager(MemoryStore(), keys=KEY)
    session = manager.new_session(user_id=5)
    manager.commit(session)
    assert manager.get_all_sessions()[0].device is None


def test_every_listing_carries_the_device(store: SessionStore) -> None:
    clock = Clock()
    manager = SessionManager(store, keys=KEY, clock=clock)
    client = device_app(manager)
    get(client, "/login", ip="2001:db8:abcd:12::9", agent="Safari")
    for listed in (manager.get_all_sessions(), manager.get_sessions_for_user("alice")):
        (session,) = listed
        assert session.device == Device(user_agent="Safari", ip="2001:db8:abcd::", created_at=clock.now,
                                        last_seen_at=clock.now)


def test_last_seen_moves_with_the_touch_and_costs_no_write_of_its_own() -> None:
    store = CountingStore()
    clock = Clock()
    manager = SessionManager(store, keys=KEY, clock=clock, idle_timeout=3600, touch_interval=60)
    client = device_app(manager)
    get(client, "/visit")
    created = clock.now
    store.reset()
    clock.now += 30  # inside the touch interval: no write, last seen stays
    get(client, "/read")
    assert store.writes() == 0
    clock.now += 40  # past it: the one touch the expiry needs, and last seen moves with it
    get(client, "/read")
    assert dict(store.calls) == {"get": 2, "touch": 1}
    (session,) = manager.get_all_sessions()
    assert session.device is not None
    assert (session.device.created_at, session.device.last_seen_at) == (created, created + 70)


def test_the_cli_list_prints_the_device() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=KEY)
    KitSession(app, store=MemoryStore())

    @app.route("/visit")
    def visit() -> str:
        flask_session["n"] = 1
        return "ok"

    app.test_client().get("/visit", base_url="https://localhost", headers={"User-Agent": 'Edge "142"'},
                          environ_base={"REMOTE_ADDR": "192.0.2.200"})
    runner = app.test_cli_runner()
    text = runner.invoke(args=["kitsession", "list"])
    assert text.exit_code == 0, text.output
    assert 'ip=192.0.2.0 user_agent="Edge \\"142\\""' in text.output
    assert "last_seen_at=" in text.output
    listed = runner.invoke(args=["kitsession", "list", "--json"])
    (row,) = json.loads(listed.output)
    assert row["device"]["ip"] == "192.0.2.0"
    assert row["device"]["user_agent"] == 'Edge "142"'
    assert row["device"]["last_seen_at"] == row["updated_at"]


def test_a_locked_reload_keeps_the_device() -> None:
    manager = SessionManager(MemoryStore(), keys=KEY, clock=Clock(), lock=True)
    client = device_app(manager)
    get(client, "/login", agent="Locked/1")
    get(client, "/locked-visit", agent="other")  # a save after the request's reload under the lock
    (session,) = manager.get_all_sessions()
    assert session.data == {"n": 1}
    assert session.device is not None and session.device.user_agent == "Locked/1"


def test_data_with_the_reserved_device_key_first_is_refused_before_any_write() -> None:
    """Data whose first key is the device's reserved key would read back as a device."""
    from kitsession_wsgi import MemoryStore, SessionDataError, SessionManager

    store = MemoryStore()
    manager = SessionManager(store, keys=["k"])
    with pytest.raises(SessionDataError, match="reserved"):
        manager.create_session(data={"\x00device": ["agent", None], "note": "x"})
    assert store.get_all() == []
