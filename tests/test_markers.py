"""The core's markers read back what they wrote, and a malformed one is an error you can see."""

from __future__ import annotations

import pytest

from kitsession_wsgi._keys import marker_key, revocation_key, session_key
from kitsession_wsgi._markers import (
    REMOVED_DATA,
    MalformedMarker,
    ReplacedMarker,
    RevocationMarker,
    is_marker,
    is_replaced_marker,
)
from kitsession_wsgi.stores.base import SessionRecord


def make_record(*, key: str, data: str) -> SessionRecord:
    return SessionRecord(key=key, data=data, user_id=None, created_at=0.0, updated_at=0.0, expires_at=60.0,
                         version=1)


@pytest.mark.parametrize("marker", [
    ReplacedMarker("handle-a", 5, 1700000000.25),
    ReplacedMarker("handle-b", "alice|with a bar", 0.0),
    ReplacedMarker("handle-c", None, 12.5),
    ReplacedMarker("handle-d", 0, 3.0),
], ids=["int-user", "str-user-with-bar", "anonymous", "user-zero"])
def test_a_replaced_marker_reads_back_what_it_wrote(marker: ReplacedMarker) -> None:
    data = marker.encode()
    assert data.startswith('"kitsession:replaced:') and data.endswith('"')
    assert ReplacedMarker.decode(data) == marker
    record = make_record(key=marker_key("old"), data=data)
    assert is_marker(record) and is_replaced_marker(record)


@pytest.mark.parametrize("user", [5, "alice|with a bar", None], ids=["int-user", "str-user-with-bar", "anonymous"])
def test_a_replaced_marker_of_a_move_to_a_new_user_says_so_and_reads_back(user: object) -> None:
    marker = ReplacedMarker("handle", user, 2.5, user_changed=True)  # type: ignore[arg-type]
    data = marker.encode()
    assert data.startswith('"kitsession:replaced-new-user:')
    assert ReplacedMarker.decode(data) == marker
    assert is_replaced_marker(make_record(key=marker_key("old"), data=data))
    assert ReplacedMarker.decode(ReplacedMarker("handle", user, 2.5).encode()).user_changed is False  # type: ignore[arg-type, union-attr]


def test_a_graced_marker_reads_back_and_a_broken_one_is_malformed() -> None:
    from kitsession_wsgi._markers import GracedMarker

    assert GracedMarker.decode(GracedMarker("old-handle").encode()) == GracedMarker("old-handle")
    for broken in ('"kitsession:graced:"', '"kitsession:graced:h', '"kitsession:removed"'):
        with pytest.raises(MalformedMarker):
            GracedMarker.decode(broken)


def test_the_user_tag_keeps_int_and_str_users_apart() -> None:
    assert ReplacedMarker.decode(ReplacedMarker("h", 5, 1.0).encode()) != ReplacedMarker("h", "5", 1.0)
    assert ReplacedMarker("h", "5", 1.0).lineage == ("5", 1.0)
    assert ReplacedMarker("h", None, 1.0).lineage is None
    assert revocation_key(5) != revocation_key("5")


@pytest.mark.parametrize("marker", [
    RevocationMarker(),
    RevocationMarker("spared-handle", (1.5, 2.25), 99.0),
    RevocationMarker(None, (3.0,), None),
], ids=["empty", "full", "lineages-only"])
def test_a_revocation_marker_reads_back_what_it_wrote(marker: RevocationMarker) -> None:
    assert RevocationMarker.decode(marker.encode()) == marker


def test_a_removed_marker_is_no_replaced_marker() -> None:
    assert ReplacedMarker.decode(REMOVED_DATA) is None
    assert not is_replaced_marker(make_record(key="k", data=REMOVED_DATA))


@pytest.mark.parametrize("data, field", [
    ('"kitsession:replaced:h|not-a-time|i:5"', "created_at"),
    ('"kitsession:replaced:h|1.0|i:five"', "user"),
    ('"kitsession:replaced:h|1.0|x:5"', "user"),
    ('"kitsession:replaced:|1.0|i:5"', "successor"),
    ('"kitsession:replaced:h|1.0"', "field count"),
    ('"kitsession:replaced:h|1.0|i:5', "closing quote"),
], ids=["created_at", "int-user", "tag", "successor", "fields", "quote"])
def test_a_malformed_replaced_marker_raises(data: str, field: str) -> None:
    with pytest.raises(MalformedMarker) as caught:
        ReplacedMarker.decode(data)
    assert caught.value.field == field


@pytest.mark.parametrize("data, field", [
    ('"kitsession:revoked:h|1.0 x|2.0"', "killed"),
    ('"kitsession:revoked:h||soon"', "revoked_at"),
    ('"kitsession:replaced:h|1.0|i:5"', "kind"),
], ids=["killed", "revoked_at", "kind"])
def test_a_malformed_revocation_marker_raises(data: str, field: str) -> None:
    with pytest.raises(MalformedMarker) as caught:
        RevocationMarker.decode(data)
    assert caught.value.field == field


def test_marker_keys_are_digests_no_cookie_id_names() -> None:
    assert marker_key("h") == session_key("kitsession:replaced:h")
    assert revocation_key(5) == session_key("kitsession:revoked:i:5")
    assert revocation_key("alice") == session_key("kitsession:revoked:s:alice")
