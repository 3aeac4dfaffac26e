from __future__ import annotations

from collections.abc import Iterator

import pytest

from clocks import FakeClock


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    yield FakeClock()
