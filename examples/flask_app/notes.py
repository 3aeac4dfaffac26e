"""The note a signed-in browser keeps in its session (the home page's form)."""

from __future__ import annotations

#: the ``flask.session`` key holding the note
NOTE_KEY = "note"
MAX_NOTE_LENGTH = 200


def clean_note(text: str | None) -> str:
    """The note as kept: trimmed, at most :data:`MAX_NOTE_LENGTH` characters."""
    return (text or "").strip()[:MAX_NOTE_LENGTH]
