"""What a session records about the browser that holds it: :class:`Device`.

A "your devices" page needs to tell sessions apart: which browser, from
where, when last used.  The adapters take the user agent and the client
address from the WSGI environ (``HTTP_USER_AGENT``, ``REMOTE_ADDR``) when a
request creates or logs in a session.  The address is personal data, so by
default only its network is kept (``record_ip="truncated"``: an IPv4 address
to its /24, an IPv6 address to its /48), enough to say "Berlin, home network"
and too little to name a household.

Stored form (:func:`with_device` / :func:`split_device`): the device rides in
the record's data text, as the first member of its JSON object, under the
reserved key ``"\\u0000device"`` (a NUL character starts it, so no
application's own key is mistaken for it in practice)::

    {"\\u0000device":["<user agent>","<ip or null>"],<the data's own members>}

So every store round-trips it with no schema change (it is the data column or
value they already keep), the text stays one JSON object, and splitting it
off gives back the data text byte for byte.  The device's times are the
record's own: ``created_at``, and ``updated_at`` as ``last_seen_at`` (an
expiry touch moves it, so last-seen costs no write of its own).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError, SessionDataError

__all__ = [
    "RECORD_IP_MODES", "USER_AGENT_LIMIT", "Device", "cut_user_agent", "device_from_environ",
    "record_ip_mode", "recorded_device", "recorded_ip", "split_device", "stored_device", "stored_text", "with_device",
]

#: the values of the ``record_ip`` option
RECORD_IP_MODES = ("truncated", "full", "none")
#: the longest user agent kept, in characters (longer ones are cut)
USER_AGENT_LIMIT = 256
_PREFIX = {4: 24, 6: 48}


@dataclass(frozen=True, slots=True)
class Device:
    """The browser a session belongs to.

    :param user_agent: the request's ``User-Agent``, cut to 256 characters
        (``""`` when the request sent none).
    :param ip: the client address as ``record_ip`` keeps it, or ``None``
        (``record_ip="none"``, or no usable address).
    :param created_at: Unix time the session was created.
    :param last_seen_at: Unix time of the session's last write or expiry touch:
        it moves at most once per touch interval, with the touch that already
        moves the expiry (no write of its own).

    .. versionadded:: 0.3
    """

    user_agent: str
    ip: str | None
    created_at: float
    last_seen_at: float


def record_ip_mode(value: object) -> str:
    """The ``record_ip`` option, checked.

    :raises ConfigurationError: naming ``record_ip`` for anything but the three modes.
    """
    if not isinstance(value, str) or value not in RECORD_IP_MODES:
        raise ConfigurationError(
            "record_ip", f"must be one of {', '.join(repr(m) for m in RECORD_IP_MODES)}, got {value!r}"
        )
    return value


def recorded_ip(address: object, mode: str) -> str | None:
    """``address`` as ``mode`` keeps it: its network (``"truncated"``), itself (``"full"``) or ``None``.

    The address comes from the environ, which a proxy or a client may fill
    with anything: what is not an IP address is not recorded (``None``),
    never an error.
    """
    if mode == "none" or not isinstance(address, str):
        return None
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if mode == "full":
        return str(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:203.0.113.7 is an IPv4 client: keep its /24
    network = ipaddress.ip_network(f"{ip}/{_PREFIX[ip.version]}", strict=False)
    return str(network.network_address)


def cut_user_agent(value: object) -> str:
    """The user agent as kept: text, at most :data:`USER_AGENT_LIMIT` characters."""
    return value[:USER_AGENT_LIMIT] if isinstance(value, str) else ""


def device_from_environ(environ: Mapping[str, Any], mode: str, now: float) -> Device:
    """The :class:`Device` of the request ``environ`` describes, created and seen at ``now``."""
    return Device(
        user_agent=cut_user_agent(environ.get("HTTP_USER_AGENT")),
        ip=recorded_ip(environ.get("REMOTE_ADDR"), mode),
        created_at=now,
        last_seen_at=now,
    )


_ENVELOPE = '{"\\u0000device":'
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)
_DECODER = json.JSONDecoder()


def with_device(text: str, user_agent: str, ip: str | None) -> str:
    """The data ``text`` (one JSON object) with the device as its first member."""
    device = _ENVELOPE + _ENCODER.encode([user_agent, ip])
    return device + "}" if text == "{}" else device + "," + text[1:]


def split_device(text: str) -> tuple[tuple[str, str | None] | None, str]:
    """``(user_agent, ip)`` and the data text without them; ``(None, text)`` for text that holds no device.

    Text that starts like the envelope but is damaged is handed back whole, for
    the core's usual handling of unreadable data.
    """
    if not text.startswith(_ENVELOPE):
        return None, text
    try:
        value, end = _DECODER.raw_decode(text, len(_ENVELOPE))
    except ValueError:
        return None, text
    if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str)
            or not isinstance(value[1], (str, type(None)))):
        return None, text
    rest = text[end:end + 1]
    if rest == "," and end + 1 < len(text):
        return (value[0], value[1]), "{" + text[end + 1:]
    if rest == "}" and end + 1 == len(text):
        return (value[0], value[1]), "{}"
    return None, text


def stored_device(text: str, created_at: float, updated_at: float) -> Device | None:
    """The :class:`Device` a record's data ``text`` carries, timed by the record (``None`` without one)."""
    fields, _ = split_device(text)
    if fields is None:
        return None
    return Device(user_agent=fields[0], ip=fields[1], created_at=created_at, last_seen_at=updated_at)


def stored_text(text: str, device: tuple[str, str | None] | None) -> str:
    """The data ``text`` as stored: with ``device`` (``(user agent, ip)``) when there is one.

    :raises SessionDataError: the data has the reserved top-level key ``"\\x00device"`` first,
        which a later read would take for a device.
    """
    if text.startswith(_ENVELOPE):
        raise SessionDataError('the session data key "\\x00device" is reserved (it stores the device)')
    return text if device is None else with_device(text, device[0], device[1])


def recorded_device(environ: Any, mode: str) -> tuple[str, str | None]:
    """``(user agent, ip)`` of the request ``environ`` describes, as stored (``record_ip`` is ``mode``).

    ``environ`` is whatever the manager read the request from: a WSGI environ,
    or a header mapping that holds neither (then ``("", None)``).
    """
    get = getattr(environ, "get", None)
    if get is None:
        return "", None
    return cut_user_agent(get("HTTP_USER_AGENT")), recorded_ip(get("REMOTE_ADDR"), mode)
