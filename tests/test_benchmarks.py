"""benchmarks/run.py in smoke mode: every scenario whose dependencies are here runs its checks.

No timing is asserted (timings belong in benchmarks/, not in tests).  What is
asserted: the script exits 0 (every correctness check passed: each write cell
read its value back from the store, reads made exactly one store call, anonymous
and forged cookies made none), the table has one row per scenario, and peers
that are not installed are skipped with a reason instead of failing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from servers import REQUIRE_SERVICES

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run.py"
#: the skip reason of a peer installed only by ``make bench`` (benchmarks/requirements.txt): the one
#: skip KITSESSION_REQUIRE_SERVICES=1 allows (a missing server or store module is a failure there)
PEER_NOT_INSTALLED = "pip install -r benchmarks/requirements.txt"
#: scenarios that need nothing beyond the package's dev extras
ALWAYS = ("raw", "bare", "flask-cookie", "kit-memory", "kit-memory-nocache", "kit-middleware")


def run_benchmark(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )


def scenario_states(report: str) -> dict[str, str]:
    return dict(re.findall(r"^- scenario (\S+): (ok|skipped|FAILED)$", report, re.M))


def table_rows(report: str, heading: str) -> list[str]:
    section = report.split(heading, 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| scenario")]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], str]:
    markdown = tmp_path_factory.mktemp("bench") / "report.md"
    result = run_benchmark("--smoke", "--no-profile", "--markdown", str(markdown))
    return result, markdown.read_text(encoding="utf-8") if markdown.exists() else ""


def test_smoke_run_passes_every_correctness_check(smoke: tuple[subprocess.CompletedProcess[str], str]) -> None:
    result, _ = smoke
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "FAILED" not in result.stdout
    assert "all correctness checks passed" in result.stdout


def test_every_scenario_has_a_row_and_a_verdict(smoke: tuple[subprocess.CompletedProcess[str], str]) -> None:
    result, markdown = smoke
    listing = run_benchmark("--list", timeout=120)
    assert listing.returncode == 0, listing.stderr[-2000:]
    scenarios = [line.split("\t") for line in listing.stdout.splitlines() if line.strip()]
    states = scenario_states(result.stdout)
    rows = table_rows(result.stdout, "## Requests")
    assert len(rows) == len(scenarios)
    for key, title, *_ in scenarios:
        assert key in states, f"no verdict for {key}"
        assert states[key] in ("ok", "skipped"), f"{key}: {states[key]}"
        row = next((r for r in rows if r.startswith(f"| {title} |")), None)
        assert row is not None, f"no table row for {key}"
        if states[key] == "skipped":
            assert "skipped: " in row, f"{key} is skipped without a reason"
            if REQUIRE_SERVICES:
                assert PEER_NOT_INSTALLED in row, f"{key} skipped with KITSESSION_REQUIRE_SERVICES=1: {row}"
        else:
            assert re.search(r"\| \d[\d,.]* \|", row), f"{key} ran but has no number: {row}"
    for key in ALWAYS:
        assert states.get(key) == "ok", f"{key} must run everywhere, got {states.get(key)}"
    assert markdown == result.stdout, "--markdown must write the report printed on stdout"


def test_round_trip_rules_are_reported(smoke: tuple[subprocess.CompletedProcess[str], str]) -> None:
    result, _ = smoke
    rows = {row.split(" | ")[0][2:]: row for row in table_rows(result.stdout, "## Store round trips per request")}
    memory = rows["kitsession KitSession, MemoryStore"]
    # one get for a read, nothing for anonymous requests or forged cookies, no write when unchanged
    assert "read 1 (get);" in memory
    assert "anon 0;" in memory and "bad sig 0;" in memory
    # a request that carries the cookie but never touches the session: no store call, under
    # Flask's defaults, with a permanent session, and with SESSION_REFRESH_EACH_REQUEST=False
    assert "untouched 0" in memory and "untouched permanent 0" in memory and "untouched refresh off 0" in memory
    assert "untouched 0" in rows["kitsession SessionMiddleware around a bare WSGI callable, MemoryStore"]


def test_missing_peers_are_skipped_with_a_reason(smoke: tuple[subprocess.CompletedProcess[str], str]) -> None:
    result, _ = smoke
    try:
        import flask_session  # noqa: F401
    except ImportError:
        row = next(r for r in table_rows(result.stdout, "## Requests") if r.startswith("| Flask-Session cachelib"))
        # Whichever of its packages is missing first (cachelib, Flask-Session) is named.
        assert "skipped:" in row and "not installed" in row and "benchmarks/requirements.txt" in row
    else:
        assert scenario_states(result.stdout)["fs-cachelib"] == "ok"


def test_only_keeps_the_baseline() -> None:
    result = run_benchmark("--smoke", "--no-profile", "--no-scaling", "--only", "kit-memory", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    states = scenario_states(result.stdout)
    assert set(states) == {"raw", "bare", "kit-memory", "kit-memory-nocache"}
    assert all(state == "ok" for state in states.values())
