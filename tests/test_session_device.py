"""Device metadata: what ``record_ip`` keeps of the client address, the user-agent cut, the option's checks."""

from __future__ import annotations

import pytest
from flask import Flask

from kitsession_wsgi import ConfigurationError, Device, MemoryStore, SessionManager
from kitsession_wsgi._device import USER_AGENT_LIMIT, cut_user_agent, device_from_environ, recorded_ip
from kitsession_wsgi.flask import KitSession, get_manager

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
