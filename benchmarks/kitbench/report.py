"""The Markdown report: the machine, then one section per measurement, then the checks.

Sections, in order: Requests (the main table; "x bare" is the number to
compare), Targets (:mod:`kitbench.verdicts`), Store round trips per request,
Store size, Pieces of a read, Where a read's microseconds go, Checks.  The
"Checks" section ends with one ``- scenario <key>: ok|skipped|FAILED`` line per
row, which ``tests/test_benchmarks.py`` reads.  ``benchmarks/README.md``
explains how to read each section.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from .bench import Bench
from .scenarios import postgres_url
from .timing import Cells
from .verdicts import fmt, target_lines

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ["kitsession-wsgi", "Flask", "Werkzeug", "Flask-Session", "cachelib", "msgspec", "Beaker",
             "SQLAlchemy", "Flask-SQLAlchemy", "peewee", "psycopg2-binary", "pymemcache", "redis"]

Profiles = dict[str, tuple[list[tuple[str, float, float]], str]]


def version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_description(bench: Bench) -> list[str]:
    """The machine, its load, the code measured (git), the libraries and the servers."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        f"- machine: {os.cpu_count()} CPUs (nproc), {cpu}; {platform.platform()}",
        f"- load average when the run started: {bench.load_at_start}; at the end: {load} "
        "(other work on the machine inflates absolute times; the interleaved ratios hold better)",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), SQLite {sqlite3.sqlite_version}",
    ]
    with contextlib.suppress(Exception):
        described = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True,
                                   text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "kitsession_wsgi"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if described:
            state = "with uncommitted changes in kitsession_wsgi/" if dirty else "kitsession_wsgi/ clean"
            lines.append(f"- code measured: {described[:110]} ({state})")
    lines.append("- libraries: " + ", ".join(f"{name} {version_of(name)}" for name in LIBRARIES))
    servers = []
    for binary, flag in (("memcached", "-V"), ("redis-server", "--version")):
        path = shutil.which(binary)
        if path:
            with contextlib.suppress(Exception):
                out = subprocess.run([path, flag], capture_output=True, text=True, timeout=5).stdout.strip()
                servers.append(out.split("\n")[0])
    with contextlib.suppress(Exception):
        import psycopg2

        with contextlib.closing(psycopg2.connect(postgres_url(), connect_timeout=2)) as connection:
            servers.append(f"PostgreSQL {connection.server_version // 10000}.{connection.server_version % 100}")
    if servers:
        lines.append("- servers (all on 127.0.0.1): " + "; ".join(servers))
    return lines


def requests_section(bench: Bench, cells: Cells) -> list[str]:
    out = ["", "## Requests", "",
           "us = microseconds per request (median of the repetitions); x bare = median of the ratios to a bare "
           "Flask app measured in the same repetition, interleaved with the cell in sub-rounds (bare, cell, bare, "
           "cell, ...; each repetition's ratio is the median of its sub-rounds' ratios). read = existing session, unchanged; write = one "
           "key set to a new value (checked in the store after every cell). \"x bare, CPU\" is the same ratio in "
           "this thread's CPU time: steadier on a busy machine, but blind to time spent waiting for a server "
           "(memcached, Redis, PostgreSQL, SQLite's fsync), so use it only for in-process stores.", "",
           "| scenario | read us | read x bare | write us | write x bare | read x bare, CPU | write x bare, CPU | notes |",
           "|---|---:|---:|---:|---:|---:|---:|---|"]
    for scenario in bench.scenarios:
        if scenario.skip:
            out.append(f"| {scenario.title} | - | - | - | - | - | - | skipped: {scenario.skip} |")
            continue
        if scenario.failure:
            out.append(f"| {scenario.title} | - | - | - | - | - | - | **FAILED**: {scenario.failure} |")
            continue
        r, w = cells.get((scenario.key, "read")), cells.get((scenario.key, "write"))
        ratio_r = "-" if r is None or scenario.kind == "roundtrip" else f"{r.ratio:.2f}"
        ratio_w = "-" if w is None else f"{w.ratio:.2f}"
        cpu_r = "-" if r is None or scenario.kind == "roundtrip" else f"{r.cpu_ratio:.2f}"
        cpu_w = "-" if w is None else f"{w.cpu_ratio:.2f}"
        out.append(f"| {scenario.title} | {fmt(r.median if r else None)} | {ratio_r} | "
                   f"{fmt(w.median if w else None)} | {ratio_w} | {cpu_r} | {cpu_w} | {scenario.notes} |")
    return out


def counts_section(bench: Bench, counts: dict[str, tuple[str, str]]) -> list[str]:
    out = ["", "## Store round trips per request", "",
           "Store calls counted by a wrapper swapped in for one untimed pass (after a warm-up request); "
           "server commands counted from memcached `stats` / Redis `INFO` differences (memcached: one per "
           "get/gets/set/add/cas/delete/touch, each a round trip here; Redis: commands run inside a Lua script "
           "count too, so a script is one round trip but several commands). anon = no cookie; "
           "bad sig = tampered signature; unknown id = a correctly signed id the store does not hold; "
           "untouched = the cookie and a view that never touches the session (Flask's defaults; a permanent "
           "session; refresh off), after a warm-up request with it.", "",
           "| scenario | store calls per request | server commands per request |", "|---|---|---|"]
    for scenario in bench.scenarios:
        if scenario.key in counts:
            calls, server = counts[scenario.key]
            out.append(f"| {scenario.title} | {calls} | {server} |")
    return out


def scaling_section(scaling: list[dict[str, Any]]) -> list[str]:
    out = ["", "## Store size", "",
           "Same request or call against a small and a large store, interleaved (A B A B in sub-rounds; "
           "remove_all alternates one call each). large / small is the median of the per-repetition ratios.", "",
           "| store | measured | small | large | us small | us large | large / small | notes |",
           "|---|---|---:|---:|---:|---:|---:|---|"]
    for row in scaling:
        if "ratio" not in row:
            out.append(f"| {row['store']} | {row['what']} | | | | | | {row.get('note', '')} |")
            continue
        out.append(f"| {row['store']} | {row['what']} | {row['small']:,} | {row['large']:,} | {fmt(row['a'])} | "
                   f"{fmt(row['b'])} | {row['ratio']:.2f} | {row['note']} |")
    return out


def pieces_section(pieces: list[tuple[str, str, float]]) -> list[str]:
    out = ["", "## Pieces of a read, each timed alone", "",
           "Isolated micro-benchmarks: the fastest of 15 short repetitions (preemption by other work only "
           "ever adds time, so the minimum is the stable figure here). Candidate changes are measured by "
           "benchmarks/explore_read_pieces.py, not here. Inside a full request each piece costs "
           "more (cold caches: about 3x for cookie parsing and verification), so use them to compare alternatives, "
           "and the profiles below for the in-place split.", "",
           "| group | piece | us |", "|---|---|---:|"]
    out += [f"| {group} | {label} | {value:.2f} |" if value == value else f"| {group} | {label} | - |"
            for group, label, value in pieces]
    return out


def profiles_section(bench: Bench, cells: Cells, profiles: Profiles) -> list[str]:
    out = ["", "## Where a read's microseconds go", "",
           "A wall-clock sampling profiler (SIGALRM every 0.25 ms, no per-call hooks) on the read cell; "
           "each sample is charged to the innermost session-related frame on its stack; us = share x the "
           "measured median above. \"Flask / werkzeug request handling\" is what bare Flask also does, "
           "plus Flask's own work for a non-null session.", ""]
    bare, raw = cells.get(("bare", "read")), cells.get(("raw", "read"))
    for key, (rows, note) in profiles.items():
        scenario = next(s for s in bench.scenarios if s.key == key)
        out += [f"### {scenario.title}", "", f"_{note}_", ""]
        if rows:
            out += ["| where | us / request | share |", "|---|---:|---:|"]
            out += [f"| {category} | {us:.1f} | {share:.0f}% |" for category, us, share in rows]
            session_us = sum(us for category, us, _ in rows
                             if not category.startswith(("Flask / werkzeug", "harness")))
            cell = cells.get((key, "read"))
            over = ""
            if cell is not None and scenario.kind == "wsgi" and raw is not None:
                over = f"; the table's read minus the raw WSGI callable: {cell.median - raw.median:.1f} us"
            elif cell is not None and bare is not None and key != "bare":
                over = (f"; the table's read minus bare Flask: "
                        f"{statistics.median(t - b for t, b in zip(cell.times, cell.baselines)):.1f} us")
            out += ["", f"Session code in total: {session_us:.1f} us per request{over}."]
        out.append("")
    return out


def checks_section(bench: Bench) -> list[str]:
    out = ["", "## Checks", ""]
    if bench.failures:
        out += [f"- FAILED: {failure}" for failure in bench.failures]
    else:
        checked = sum(1 for s in bench.scenarios if s.calls and not s.skip)
        out.append(f"- all correctness checks passed ({checked} scenarios)")
    for scenario in bench.scenarios:
        state = "skipped" if scenario.skip else ("FAILED" if scenario.failure else "ok")
        out.append(f"- scenario {scenario.key}: {state}")
    return out


def report(bench: Bench, cells: Cells, counts: dict[str, tuple[str, str]], scaling: list[dict[str, Any]],
           profiles: Profiles, pieces: list[tuple[str, str, float]], seconds: float) -> str:
    """The whole report, as printed on stdout and written by ``--markdown``."""
    settings = bench.settings
    out = ["# kitsession-wsgi benchmark", ""]
    out += machine_description(bench)
    out.append(f"- mode: {bench.mode} ({settings['reps']} repetitions, ~{settings['cell_seconds']} s per cell, "
               f"median reported); run took {seconds:.0f} s; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if bench.mode == "smoke":
        out += ["", "**Smoke mode: a couple of requests per cell. Correctness checks only; the times mean nothing.**"]
    out += requests_section(bench, cells)
    out += ["", "## Targets (issue 8)", "", "| target | verdict | numbers |", "|---|---|---|"]
    out += target_lines(bench, cells, scaling)
    out += counts_section(bench, counts)
    if scaling:
        out += scaling_section(scaling)
    if pieces:
        out += pieces_section(pieces)
    if profiles:
        out += profiles_section(bench, cells, profiles)
    out += checks_section(bench)
    return "\n".join(out) + "\n"
