"""A dict used as a bounded cache, oldest entry out first.

Generic: the cookie cache and the stores' recent-reads memos use it; it knows
nothing of sessions.
"""

from __future__ import annotations

from typing import Any

__all__ = ["put_bounded"]


def put_bounded(cache: dict[Any, Any], key: Any, value: Any, limit: int) -> None:
    """``cache[key] = value``, first dropping the oldest entries so at most ``limit`` remain.

    One entry at a time, oldest first (dicts keep insertion order): clearing
    everything at once would make every active client pay a miss together.
    Safe to call from several threads; a race only costs an entry.
    """
    while len(cache) >= limit:
        try:
            del cache[next(iter(cache))]
        except (KeyError, RuntimeError, StopIteration):
            break  # another thread changed the cache meanwhile
    cache[key] = value
