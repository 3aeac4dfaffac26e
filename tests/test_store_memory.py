from __future__ import annotations

from collections.abc import Iterator

import pytest

from kitsession_wsgi import ConfigurationError, MemoryStore
from kitsession_wsgi.testing import StoreContract, make_record


class TestMemoryStoreContract(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        yield MemoryStore()


def test_max_sessions_evicts_the_oldest_session() -> None:
    store = MemoryStore(max_sessions=3)
    records = [make_record(store, user_id=1) for _ in range(4)]
    for record in records:
        assert store.create(record)
    assert len(store) == 3
    assert store.get(records[0].key) is None
    assert sorted(r.key for r in store.get_all_for_user(1)) == sorted(r.key for r in records[1:])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"], ids=repr)
def test_max_sessions_is_validated(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="max_sessions"):
        MemoryStore(max_sessions=bad)  # type: ignore[arg-type]
