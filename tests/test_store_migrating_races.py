"""The core's revocation races (tests/test_revocation_races.py), run again over a
MigratingStore whose records all start in ``source``: every session, "replaced" marker and
revocation marker is moved the first time the core touches it, inside the very moves and
removals those tests race.  Revocation still wins every race (rule 9 in docs/design.rst).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kitsession_wsgi import MemoryStore, SessionStore

from store_kinds import open_store, store_servers  # noqa: F401 (store_servers is a fixture)
from test_revocation_races import (  # noqa: F401 (collected here, with this module's store)
    test_a_client_looping_regenerate_never_beats_one_removal,
    test_a_long_chain_removal_ends_the_lineage_so_later_moves_undo_themselves,
    test_a_move_inside_a_non_atomic_revoke_all_undoes_itself,
    test_a_move_paused_at_its_dangerous_step_never_outlives_a_removal,
    test_the_device_that_signed_out_the_others_keeps_moving_freely,
    test_the_move_survives_when_nothing_removes_it,
)
from test_store_migrating import FromSource

#: the target's kind (the looping test reads its rounds by it); the source is memory, or
#: memcached for Redis
TARGETS = ["memory", "sqlite", "redis"]


@pytest.fixture(params=TARGETS, ids=["memory-to-memory", "memory-to-sqlite", "memcached-to-redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path, store_servers: Any) -> Iterator[SessionStore]:
    with open_store(request.param, tmp_path, store_servers) as target:
        if request.param == "redis":
            with open_store("memcached", tmp_path, store_servers) as source:
                yield FromSource(target, source)
        else:
            yield FromSource(target, MemoryStore())
