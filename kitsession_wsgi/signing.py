"""Cookie signing in the express-session / cookie-parser format.

A signed value is ``"s:" + id + "." + base64(HMAC-SHA256(key, id))`` with the
``=`` padding stripped, exactly what Node's ``cookie-signature`` produces, so
cookies move between this library, express-session and svelte-kit-session.

Unlike ``cookie-signature`` 1.1 (which svelte-kit-session used) the whole MAC is compared,
in constant time, and a value without the ``s:`` prefix is rejected.

A bearer token (:class:`TokenSigner`) is ``<id>.<mac>`` with its MAC under keys derived
from the cookie keys for that purpose alone, so a token is never a cookie's value
without its ``s:`` and a cookie's value is never a token: each credential opens its
own transport only.

.. versionadded:: 0.1
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import NamedTuple

from .errors import ConfigurationError

__all__ = [
    "MAC_LENGTH",
    "MAX_ID_LENGTH",
    "SIGNED_PREFIX",
    "CookieSigner",
    "TOKEN_KEY_CONTEXT",
    "TokenSigner",
    "Unsigned",
    "normalize_keys",
]

SIGNED_PREFIX = "s:"
#: Length of an unpadded base64 HMAC-SHA256: 32 bytes -> 43 characters.
MAC_LENGTH = 43
#: The longest session id a cookie or token may carry: a store's ``create_id`` must stay
#: within it (``secrets.token_urlsafe(n)`` is ``ceil(4n/3)`` characters: at most 192 bytes).
MAX_ID_LENGTH = 256


#: What a bearer token's keys are derived for: ``HMAC-SHA256(cookie key, TOKEN_KEY_CONTEXT)``.
TOKEN_KEY_CONTEXT = b"kitsession-wsgi bearer token key v1"


class Unsigned(NamedTuple):
    """The result of a successful verification.

    ``key_index`` is the position of the key that verified the value; anything
    but 0 means the cookie should be re-signed with the current key.
    """

    session_id: str
    key_index: int


def normalize_keys(keys: str | bytes | Sequence[str | bytes] | None) -> tuple[bytes, ...]:
    """Turn the ``keys`` option into a tuple of byte keys, newest first.

    A single ``str`` or ``bytes`` is one key (svelte-kit-session split a string into
    characters and signed with its first one).

    :raises ConfigurationError: a key is empty or not text/bytes.
    """
    if keys is None:
        return ()
    if isinstance(keys, (str, bytes)):
        keys = [keys]
    if not isinstance(keys, Sequence):
        # A set or dict has no order, and keys[0] is the one that signs.
        raise ConfigurationError(
            "keys", f"must be a str, bytes or an ordered sequence (list or tuple), got {type(keys).__name__}"
        )
    normalized: list[bytes] = []
    for index, key in enumerate(keys):
        if isinstance(key, str):
            key = key.encode("utf-8")
        if not isinstance(key, bytes):
            raise ConfigurationError(
                "keys", f"key {index} is {type(key).__name__}; keys must be str or bytes"
            )
        if not key:
            raise ConfigurationError("keys", f"key {index} is empty")
        normalized.append(key)
    return tuple(normalized)


def _mac(key: bytes, value: bytes) -> bytes:
    digest = hmac.new(key, value, hashlib.sha256).digest()
    return base64.b64encode(digest).rstrip(b"=")


class CookieSigner:
    """Signs with ``keys[0]`` and verifies with every key (rotation).

    :param keys: signing keys, newest first; at least one.
    :raises ConfigurationError: no key was given.

    .. versionadded:: 0.1
    """

    __slots__ = ("keys",)

    #: what every signed value starts with
    prefix = SIGNED_PREFIX

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ConfigurationError("keys", "at least one key is required to sign cookies")
        self.keys = tuple(keys)

    def sign(self, session_id: str) -> str:
        """Return ``s:<id>.<mac>`` signed with the newest key."""
        mac = _mac(self.keys[0], session_id.encode("utf-8"))
        return f"{self.prefix}{session_id}.{mac.decode('ascii')}"

    def unsign(self, value: str) -> Unsigned | None:
        """Verify a decoded cookie value; ``None`` unless a key verifies it in full.

        Never raises: any string, including non-ASCII and lone surrogates, is
        either a verified id or ``None``.
        """
        prefix = self.prefix
        if not value.startswith(prefix):
            return None
        dot = value.rfind(".")
        if dot <= len(prefix) or len(value) - dot - 1 != MAC_LENGTH:
            return None
        session_id = value[len(prefix) : dot]
        try:
            id_bytes = session_id.encode("utf-8")
            presented = value[dot + 1 :].encode("ascii")
        except UnicodeEncodeError:
            return None
        for index, key in enumerate(self.keys):
            if hmac.compare_digest(_mac(key, id_bytes), presented):
                return Unsigned(session_id, index)
        return None


class TokenSigner(CookieSigner):
    """Signs and verifies bearer tokens, ``<id>.<mac>``, for the cookie keys ``keys``.

    Each key signs tokens through a key derived from it for tokens alone
    (``HMAC-SHA256(key, TOKEN_KEY_CONTEXT)``), so rotation works as for cookies
    (``keys[0]`` signs, every key verifies) while no cookie MAC ever verifies
    as a token MAC or the other way round.

    .. versionadded:: 0.3
    """

    __slots__ = ()

    prefix = ""

    def __init__(self, keys: Sequence[bytes]) -> None:
        super().__init__([hmac.new(key, TOKEN_KEY_CONTEXT, hashlib.sha256).digest() for key in keys])

    def sign(self, session_id: str) -> str:
        """Return ``<id>.<mac>`` signed with the key derived from the newest key."""
        return super().sign(session_id)

    def unsign(self, value: str) -> Unsigned | None:
        """Verify a token; ``None`` unless a derived key verifies it in full (never raises)."""
        return super().unsign(value)
