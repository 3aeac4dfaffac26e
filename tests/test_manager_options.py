"""SessionManager options: every bad value fails at construction and names its option."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from kitsession_wsgi import ConfigurationError, MemoryStore, SessionManager
from kitsession_wsgi.stores.base import SessionStore

from session_helpers import CountingStore, node_signed_value, parse_set_cookie, stored_session


def assert_rejected(option: str, **options: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        SessionManager(MemoryStore(), **options)
    assert info.value.option == option, f"{options!r} blamed {info.value.option!r}: {info.value}"
    assert option in str(info.value)
    return info.value


def case(option_values: dict[str, Any], id: str) -> Any:
    return pytest.param(option_values, id=id)


# -- keys / signed -------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        case({"signed": True}, "signed-without-keys"),
        case({"signed": True, "keys": None}, "signed-with-keys-None"),
        case({"signed": True, "keys": []}, "signed-with-empty-key-list"),
        case({"signed": "yes", "keys": "k"}, "signed-not-a-bool"),
        case({"signed": 1, "keys": "k"}, "signed-int"),
    ],
)
def test_signed_is_validated(options: dict[str, Any]) -> None:
    assert_rejected("signed", **options)


@pytest.mark.parametrize(
    "options",
    [
        case({"keys": ""}, "empty-str"),
        case({"keys": b""}, "empty-bytes"),
        case({"keys": ["new", ""]}, "empty-str-in-list"),
        case({"keys": [b""]}, "empty-bytes-in-list"),
        case({"keys": ["new", 42]}, "int-in-list"),
        case({"keys": [None]}, "None-in-list"),
        case({"keys": [["nested"]]}, "list-in-list"),
        case({"keys": ["new", ""], "signed": True}, "empty-with-signed"),
    ],
)
def test_keys_are_validated(options: dict[str, Any]) -> None:
    assert_rejected("keys", **options)


@pytest.mark.parametrize("keys", [[], ()], ids=["empty-list", "empty-tuple"])
def test_an_empty_key_list_is_refused_not_taken_for_unsigned_cookies(keys: object) -> None:
    """``keys=[]`` (a secret read from an empty environment variable list) asked for signing."""
    error = assert_rejected("keys", keys=keys)
    assert "signed=False" in str(error)
    # Unsigned on purpose stays possible, with or without the empty list.
    assert SessionManager(MemoryStore(), keys=keys, signed=False).signer is None


@pytest.mark.parametrize("keys", [12345, 1.5], ids=["int", "float"])
def test_keys_that_are_not_text_or_a_sequence_name_the_option(keys: object) -> None:
    assert_rejected("keys", keys=keys)


def test_a_str_key_is_one_key_not_its_characters() -> None:
    store = CountingStore()
    manager = SessionManager(store, keys="secret", secure=False)
    session, header = stored_session(manager, store)
    assert session.id is not None
    assert parse_set_cookie(manager.set_session_cookie(session)).value == node_signed_value("secret", session.id)

    only_secret = SessionManager(store, keys=["secret"])
    assert only_secret.initialize_session({"Cookie": header}).handle == session.handle

    for keys in (list("secret"), ["s"], "s", ["secre"]):
        other = SessionManager(store, keys=keys)
        assert other.initialize_session({"Cookie": header}).is_new, keys


def test_a_bytes_key_is_one_key() -> None:
    store = CountingStore()
    manager = SessionManager(store, keys=b"secret")
    session, header = stored_session(manager, store)
    assert SessionManager(store, keys=["secret"]).initialize_session({"Cookie": header}).handle == session.handle
    assert SessionManager(store, keys=[b"s"]).initialize_session({"Cookie": header}).is_new


@pytest.mark.parametrize(
    ("options", "signed"),
    [
        pytest.param({}, False, id="no-keys-unsigned"),
        pytest.param({"keys": "k"}, True, id="keys-sign-by-default"),
        pytest.param({"keys": ["k"], "signed": False}, False, id="keys-but-signed-False"),
    ],
)
def test_signed_defaults_to_whether_keys_are_given(options: dict[str, Any], signed: bool) -> None:
    assert SessionManager(MemoryStore(), **options).signed is signed


# -- cookie attributes ---------------------------------------------------------------

BAD_TEXT = [
    ("semicolon", ";"),
    ("space", " "),
    ("tab", "\t"),
    ("newline", "\n"),
    ("carriage-return", "\r"),
    ("nul", "\x00"),
    ("bell", "\x07"),
    ("del", "\x7f"),
    ("comma", ","),
]


@pytest.mark.parametrize(
    "name",
    [pytest.param(f"sess{bad}ion", id=label) for label, bad in BAD_TEXT]
    + [
        pytest.param("", id="empty"),
        pytest.param("sess=ion", id="equals"),
        pytest.param('"session"', id="quoted"),
        pytest.param("séssion", id="non-ascii"),
        pytest.param(None, id="None"),
        pytest.param(b"session", id="bytes"),
    ],
)
def test_name_is_validated(name: object) -> None:
    assert_rejected("name", name=name)


@pytest.mark.parametrize(
    "options",
    [
        case({"name": "__Host-session", "secure": False}, "host-prefix-not-secure"),
        case({"name": "__Host-session", "path": "/app"}, "host-prefix-with-path"),
        case({"name": "__Host-session", "domain": "example.com"}, "host-prefix-with-domain"),
        case({"name": "__Secure-session", "secure": False}, "secure-prefix-not-secure"),
    ],
)
def test_cookie_prefixes_are_enforced(options: dict[str, Any]) -> None:
    assert_rejected("name", **options)


@pytest.mark.parametrize(
    "options",
    [
        case({"name": "__Host-session"}, "host-prefix"),
        case({"name": "__Secure-session", "path": "/app", "domain": "example.com"}, "secure-prefix"),
    ],
)
def test_valid_prefixed_names_are_accepted(options: dict[str, Any]) -> None:
    manager = SessionManager(MemoryStore(), **options)
    cookie = parse_set_cookie(manager.set_session_cookie("some-id"))
    assert cookie.name == options["name"]
    assert cookie.attributes["secure"] is True


@pytest.mark.parametrize(
    "path",
    [pytest.param(f"/a{bad}b", id=label) for label, bad in BAD_TEXT]
    + [
        pytest.param("", id="empty"),
        pytest.param("app", id="relative"),
        pytest.param(None, id="None"),
        pytest.param(b"/", id="bytes"),
    ],
)
def test_path_is_validated(path: object) -> None:
    assert_rejected("path", path=path)


@pytest.mark.parametrize(
    "domain",
    [pytest.param(f"exam{bad}ple.com", id=label) for label, bad in BAD_TEXT]
    + [
        pytest.param("", id="empty"),
        pytest.param(b"example.com", id="bytes"),
        pytest.param(42, id="int"),
    ],
)
def test_domain_is_validated(domain: object) -> None:
    assert_rejected("domain", domain=domain)


@pytest.mark.parametrize("domain", ["a..example.com", "x" * 64 + ".example.com"], ids=["empty-label", "label-over-63"])
def test_domain_that_cannot_be_sent_fails_at_construction(domain: str) -> None:
    try:
        manager = SessionManager(MemoryStore(), domain=domain)
    except ConfigurationError as exc:
        assert exc.option == "domain"
        return
    # Accepted: then it must work on a request.
    manager.remove_session_cookie()
    manager.set_session_cookie("some-id")


@pytest.mark.parametrize(
    "options",
    [
        case({"samesite": "None", "secure": False}, "None-not-secure"),
        case({"samesite": "none", "secure": False}, "lowercase-none-not-secure"),
        case({"samesite": "Sometimes"}, "unknown"),
        case({"samesite": ""}, "empty"),
        case({"samesite": None}, "python-None"),
        case({"samesite": True}, "bool"),
    ],
)
def test_samesite_is_validated(options: dict[str, Any]) -> None:
    assert_rejected("samesite", **options)


@pytest.mark.parametrize(("given", "sent"), [("lax", "Lax"), ("STRICT", "Strict"), ("None", "None")])
def test_samesite_is_normalised(given: str, sent: str) -> None:
    manager = SessionManager(MemoryStore(), samesite=given)
    assert parse_set_cookie(manager.set_session_cookie("x")).attributes["samesite"] == sent


@pytest.mark.parametrize("option", ["secure", "httponly", "rolling"])
@pytest.mark.parametrize("value", ["yes", 1, None], ids=["str", "int", "None"])
def test_flags_must_be_bool(option: str, value: object) -> None:
    assert_rejected(option, **{option: value, "idle_timeout": 60})


# -- lifetimes -------------------------------------------------------------------------

BAD_SECONDS = [
    pytest.param(0, id="zero"),
    pytest.param(-1, id="negative"),
    pytest.param(-0.5, id="negative-float"),
    pytest.param(timedelta(0), id="zero-timedelta"),
    pytest.param(timedelta(seconds=-5), id="negative-timedelta"),
    pytest.param("3600", id="str"),
    pytest.param(True, id="True"),
    pytest.param(False, id="False"),
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param([60], id="list"),
]


@pytest.mark.parametrize("value", [*BAD_SECONDS, pytest.param(None, id="None")])
def test_max_age_is_validated(value: object) -> None:
    assert_rejected("max_age", max_age=value)


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_idle_timeout_is_validated(value: object) -> None:
    assert_rejected("idle_timeout", idle_timeout=value)


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_touch_interval_is_validated(value: object) -> None:
    assert_rejected("touch_interval", touch_interval=value, idle_timeout=60)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(3600, 3600.0), (1.5, 1.5), (timedelta(days=2), 172800.0)],
    ids=["int", "float", "timedelta"],
)
def test_max_age_accepts_seconds_and_timedelta(value: Any, seconds: float) -> None:
    assert SessionManager(MemoryStore(), max_age=value).max_age == seconds


def test_max_age_too_large_for_a_cookie_date_fails_at_construction() -> None:
    try:
        manager = SessionManager(MemoryStore(), max_age=10**12)
    except ConfigurationError as exc:
        assert exc.option == "max_age"
        return
    session = manager.create_session(data={"a": 1})
    manager.set_session_cookie(session)


def test_rolling_needs_idle_timeout() -> None:
    assert_rejected("rolling", rolling=True)
    assert SessionManager(MemoryStore(), rolling=True, idle_timeout=60).rolling is True


def test_touch_interval_defaults_to_a_tenth_of_idle_timeout_capped_at_a_minute() -> None:
    assert SessionManager(MemoryStore()).touch_interval is None
    assert SessionManager(MemoryStore(), idle_timeout=100).touch_interval == 10
    assert SessionManager(MemoryStore(), idle_timeout=7200).touch_interval == 60


# -- behaviour options -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["ignore", "MERGE", "", None, 1], ids=["unknown", "uppercase", "empty", "None", "int"]
)
def test_on_conflict_is_validated(value: object) -> None:
    assert_rejected("on_conflict", on_conflict=value)


@pytest.mark.parametrize(
    "value", [0, -1, 1.5, "1024", True, None, 2.0], ids=["zero", "negative", "float", "str", "bool", "None", "whole-float"]
)
def test_max_data_bytes_is_validated(value: object) -> None:
    assert_rejected("max_data_bytes", max_data_bytes=value)


@pytest.mark.parametrize("value", [0, -1, True, "3"], ids=["zero", "negative", "bool", "str"])
def test_merge_retries_is_validated(value: object) -> None:
    assert_rejected("merge_retries", merge_retries=value)


@pytest.mark.parametrize("value", [-1, True, 1.5, None], ids=["negative", "bool", "float", "None"])
def test_cookie_cache_size_is_validated(value: object) -> None:
    assert_rejected("cookie_cache_size", cookie_cache_size=value)


@pytest.mark.parametrize("value", [None, 1_800_000_000.0, "time.time"], ids=["None", "float", "str"])
def test_clock_must_be_callable(value: object) -> None:
    assert_rejected("clock", clock=value)


class _StoreWithoutTouch:
    """Every store method but ``touch``."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    def __getattr__(self, name: str) -> Any:
        if name == "touch":
            raise AttributeError(name)
        return getattr(self.inner, name)


class _StoreWithAttributeNotMethod(_StoreWithoutTouch):
    touch = "not callable"


@pytest.mark.parametrize(
    ("store", "missing"),
    [
        pytest.param(object(), "get", id="object"),
        pytest.param({}, "create", id="dict"),
        pytest.param(_StoreWithoutTouch(), "touch", id="missing-touch"),
        pytest.param(_StoreWithAttributeNotMethod(), "touch", id="non-callable-touch"),
    ],
)
def test_store_must_have_every_method(store: object, missing: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionManager(store)  # type: ignore[arg-type]
    assert info.value.option == "store"
    assert missing in str(info.value)


def test_a_duck_typed_store_with_every_method_is_accepted() -> None:
    class Proxy(_StoreWithoutTouch):
        def touch(self, key: str, updated_at: float, expires_at: float) -> bool:
            return self.inner.touch(key, updated_at, expires_at)

    manager = SessionManager(Proxy())  # type: ignore[arg-type]
    assert manager.create_session(data={"a": 1}).id


def test_configuration_error_is_a_value_error_and_kit_error() -> None:
    from kitsession_wsgi import KitSessionError

    error = assert_rejected("max_age", max_age=0)
    assert isinstance(error, ValueError)
    assert isinstance(error, KitSessionError)


def test_defaults_match_the_design() -> None:
    manager = SessionManager(MemoryStore())
    assert (manager.name, manager.secure, manager.httponly, manager.path, manager.domain, manager.samesite) == (
        "session", True, True, "/", None, "Strict",
    )
    assert manager.max_age == 14 * 86400
    assert (manager.idle_timeout, manager.rolling, manager.on_conflict, manager.max_data_bytes) == (
        None, False, "merge", 524288,
    )
    assert isinstance(manager.store, SessionStore)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        pytest.param("lock", "yes", id="lock-str"),
        pytest.param("lock", 1, id="lock-int"),
        pytest.param("lock_timeout", 0, id="lock_timeout-zero"),
        pytest.param("lock_timeout", "10", id="lock_timeout-str"),
        pytest.param("lock_ttl", -1, id="lock_ttl-negative"),
        pytest.param("lock_ttl", True, id="lock_ttl-bool"),
    ],
)
def test_lock_options_are_validated(option: str, value: object) -> None:
    assert_rejected(option, **{option: value})


def test_unordered_keys_are_rejected() -> None:
    assert_rejected("keys", keys={"new", "old"})


def test_a_store_whose_ids_no_cookie_can_carry_fails_loudly_not_with_unreadable_sessions() -> None:
    """An id over 256 characters was stored and then never read back (every request a new session)."""

    class LongIds(MemoryStore):
        def create_id(self) -> str:
            return "a" * 257

    manager = SessionManager(LongIds(), keys="k")
    with pytest.raises(ConfigurationError) as raised:
        manager.create_session(data={"a": 1})
    assert raised.value.option == "store" and "256" in str(raised.value)
