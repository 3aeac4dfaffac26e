"""The state of one run: its mode, its scenarios, its servers and temporary files, its failures.

:class:`Bench` is handed to every scenario builder (``build_*(bench,
scenario)`` in :mod:`kitbench.peers`, :mod:`kitbench.scenarios` and
:mod:`kitbench.roundtrips`); :func:`kitbench.catalog.build_all` adds the rows in
table order.  A builder that raises :class:`~kitbench.harness.Skip` leaves a
"skipped: reason" row; any other error is a failed row and a non-zero exit.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .harness import CheckFailed, Scenario, Skip, log
from .servers import Servers

MODES: dict[str, dict[str, Any]] = {
    # reps, seconds per timed cell, seconds of warm-up, fewest / most requests per cell
    "full": dict(reps=5, cell_seconds=0.25, warmup_seconds=0.05, min_n=20, max_n=200_000,
                 scale_small=1_000, scale_large=1_000_000, scale_sqlite_large=1_000_000,
                 remove_small=10, remove_iterations=60, profile_seconds=2.0, subrounds=8),
    "quick": dict(reps=5, cell_seconds=0.05, warmup_seconds=0.02, min_n=10, max_n=50_000,
                  scale_small=1_000, scale_large=100_000, scale_sqlite_large=100_000,
                  remove_small=10, remove_iterations=20, profile_seconds=0.5, subrounds=4),
    "smoke": dict(reps=2, cell_seconds=0.0, warmup_seconds=0.0, min_n=2, max_n=2,
                  scale_small=100, scale_large=1_000, scale_sqlite_large=1_000,
                  remove_small=10, remove_iterations=2, profile_seconds=0.0, subrounds=1),
}

#: rows every run measures, whatever --only says: every ratio is against them
BASELINES = ("bare", "raw")


def matches(key: str, patterns: list[str]) -> bool:
    """``--only`` semantics: a glob or a substring of the key."""
    return any(fnmatch.fnmatch(key, p) or p in key for p in patterns)


class Bench:
    """One run of the benchmark."""

    def __init__(self, mode: str, only: list[str] | None) -> None:
        self.mode = mode
        self.settings = MODES[mode]
        self.only = only
        self.tmp = Path(tempfile.mkdtemp(prefix="kitsession-bench-"))
        self.servers = Servers()
        self.scenarios: list[Scenario] = []
        self.failures: list[str] = []
        #: versions of peers that ran, for the report's header (filled by the builders)
        self.versions: dict[str, str] = {}
        self.load_at_start = ", ".join(f"{value:.1f}" for value in os.getloadavg())

    def wanted(self, key: str) -> bool:
        return key in BASELINES or not self.only or matches(key, self.only)

    def scenario(self, key: str) -> Scenario | None:
        """The scenario ``key`` if it was set up and neither skipped nor failed."""
        return next((s for s in self.scenarios if s.key == key and not s.skip and not s.failure), None)

    def add(self, key: str, title: str, build: Callable[[Bench, Scenario], None], *, kind: str = "flask") -> None:
        """Set up the row ``key`` with ``build(bench, scenario)`` (if ``--only`` wants it)."""
        if not self.wanted(key):
            return
        scenario = Scenario(key, title, kind=kind)
        log(f"setting up {key}")
        try:
            build(self, scenario)
        except Skip as exc:
            scenario.skip = str(exc)
            scenario.calls.clear()
        except CheckFailed as exc:
            scenario.failure = f"setup check failed: {exc}"
            scenario.calls.clear()
            self.failures.append(f"{key}: {scenario.failure}")
        except Exception as exc:  # a peer that cannot run here is a row with the reason, not a crash
            scenario.failure = f"setup error: {type(exc).__name__}: {exc}"
            scenario.calls.clear()
            self.failures.append(f"{key}: {scenario.failure}")
            log(traceback.format_exc())
        self.scenarios.append(scenario)

    def fail(self, scenario: Scenario, message: str) -> None:
        """A check of ``scenario`` failed after its setup: its row says so and the run exits 1."""
        scenario.failure = scenario.failure or message
        self.failures.append(f"{scenario.key}: {message}")
        log(f"FAILED {scenario.key}: {message}")

    def close(self) -> None:
        for scenario in self.scenarios:
            for step in scenario.cleanup:
                try:
                    step()
                except Exception as exc:
                    log(f"cleanup of {scenario.key} failed: {exc}")
        self.servers.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
