"""The byte layout shared by the Redis and memcached stores: one value per session.

A record is stored as an ASCII header line, then the user's index key, the
record key and the data, as UTF-8 (lone surrogates kept with
``surrogatepass``)::

    K1 <version> <created_at> <updated_at> <expires_at> <user bytes> <key bytes>\\n<user><key><data>

``K1`` names the format; the times are Python ``repr`` floats; ``<user>`` is
the user's tag (``i:5``, ``s:alice``, ``u:<hex>`` for text that is not
valid UTF-8, empty for an anonymous session: see ``_toolkit.user_tag``) and the two lengths are byte
counts, so user ids, keys and data may hold any character.  Reading a record
splits one short line and slices the rest: the session data is never escaped
inside another document, so it is decoded once, by the core.  Redis's Lua
scripts read only the header.

.. versionadded:: 0.1
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from ._toolkit import user_from_tag, user_tag
from .base import SessionRecord

__all__ = ["decode_record", "encode_record", "storage_id", "to_bytes", "to_text"]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")


def storage_id(key: str) -> str:
    """The key's form inside server keys and indexes: the key itself when it looks like the core's digests.

    Anything else (client text reaching ``get`` or ``delete``) is hashed, with a
    ``~`` no verbatim key contains, so the two never collide; neither form
    contains ``:``, so records never collide with ``user:`` or ``lock:`` keys.
    """
    if _PLAIN_KEY.fullmatch(key):
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return "~" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def to_text(value: Any) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)


def to_bytes(text: str) -> bytes:
    # Session JSON may hold lone surrogates ("\ud800"), which strict UTF-8 encoders refuse.
    return text.encode("utf-8", "surrogatepass")


def encode_record(record: SessionRecord) -> bytes:
    """The record as stored: the ``K1`` header line, then user index key, key and data (UTF-8)."""
    user = to_bytes(user_tag(record.user_id)) if record.user_id is not None else b""
    key = to_bytes(record.key)
    header = (f"K1 {record.version} {record.created_at!r} {record.updated_at!r} {record.expires_at!r}"
              f" {len(user)} {len(key)}\n")
    return header.encode("ascii") + user + key + to_bytes(record.data)


def decode_record(raw: Any) -> SessionRecord | None:
    """A record from a stored value; ``None`` for a missing, foreign or damaged value."""
    if not raw:
        return None
    if isinstance(raw, str):  # a client that decodes replies: the lengths count bytes
        raw = raw.encode("utf-8", "surrogatepass")
    try:
        end = raw.index(b"\n")
        tag, version, created_at, updated_at, expires_at, user_length, key_length = raw[:end].split(b" ")
        if tag != b"K1":
            return None
        user_end = end + 1 + int(user_length)
        data_start = user_end + int(key_length)
        if data_start > len(raw):
            return None
        return SessionRecord(
            key=raw[user_end:data_start].decode("utf-8", "surrogatepass"),
            data=raw[data_start:].decode("utf-8", "surrogatepass"),
            user_id=user_from_tag(raw[end + 1:user_end]),
            created_at=float(created_at),
            updated_at=float(updated_at),
            expires_at=float(expires_at),
            version=int(version),
        )
    except ValueError:  # a missing header line, a wrong field count, bad numbers or bad UTF-8
        return None
