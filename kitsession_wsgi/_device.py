"""What a session records about the browser that holds it: :class:`Device`.

A "your devices" page needs to tell sessions apart: which browser, from
where, when last used.  The adapters take the user agent and the client
address from the WSGI environ (``HTTP_USER_AGENT``, ``REMOTE_ADDR``) when a
request creates or logs in a session.  The address is personal data, so by
default only its network is kept (``record_ip="truncated"``: an IPv4 address
to its /24, an IPv6 address to its /48), enough to say "Berlin, home network"
and too little to name a household.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError

__all__ = [
    "RECORD_IP_MODES", "USER_AGENT_LIMIT", "Device", "cut_user_agent", "device_from_environ",
    "record_ip_mode", "recorded_ip",
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
