"""Junk cookie values and tokens cannot fill the log or flood the signal.

A request may carry up to 20 values of the session cookie's name (cookie tossing):
each that does not verify used to write an INFO line and send ``invalid_signature``,
so 10 requests x 20 values gave 200 lines.  Now: one signal per request, and at most
one log line per interval, carrying the count.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from kitsession_wsgi import MemoryStore, SessionManager, signals
from kitsession_wsgi import _session_cookie

JUNK = "; ".join(f"session=s%3Ajunk{n}.{'A' * 43}" for n in range(20))


@pytest.fixture
def manager() -> SessionManager:
    return SessionManager(MemoryStore(), keys="k", secure=False, bearer=True)


@pytest.fixture
def signal_count(manager: SessionManager) -> Iterator[list[int]]:
    sent = [0]

    def receiver(sender: Any, **extra: Any) -> None:
        sent[0] += 1

    signals.invalid_signature.connect(receiver, sender=manager)
    yield sent
    signals.invalid_signature.disconnect(receiver, sender=manager)


def rejection_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "invalid signature" in r.getMessage()]


def test_ten_requests_of_twenty_junk_values_log_one_line_and_signal_once_each(
    manager: SessionManager, signal_count: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kitsession_wsgi")
    for _ in range(10):
        assert manager.initialize_session({"Cookie": JUNK}).is_new
    for _ in range(10):
        assert manager.initialize_session({"Authorization": "Bearer junk." + "A" * 43}).is_new
    assert signal_count[0] == 20, "one signal per request, not per value"
    lines = rejection_lines(caplog)
    assert len(lines) == 1, lines
    assert lines[0].startswith("20 ")  # the first request's 20 values, logged at once


def test_after_the_interval_the_next_line_counts_everything_rejected_meanwhile(
    manager: SessionManager, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="kitsession_wsgi")
    manager.initialize_session({"Cookie": JUNK})
    for _ in range(4):
        manager.initialize_session({"Cookie": JUNK})
    monkeypatch.setattr(_session_cookie, "REJECTION_LOG_INTERVAL", 0.0)
    manager.initialize_session({"Cookie": "session=s%3Aone." + "B" * 43})
    assert [line.split()[0] for line in rejection_lines(caplog)] == ["20", "81"]


def test_a_cookie_header_that_verifies_logs_nothing(manager: SessionManager, signal_count: list[int],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kitsession_wsgi")
    session = manager.create_session(data={"a": 1})
    assert session.id is not None
    header = f"session={manager.set_session_cookie(session).split(';')[0].split('=', 1)[1]}"
    assert manager.initialize_session({"Cookie": header}).handle == session.handle
    assert signal_count[0] == 0 and rejection_lines(caplog) == []
