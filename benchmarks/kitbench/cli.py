"""The command line of ``benchmarks/run.py``: parse the options, run the sections, print the report.

Exit status 0 when every correctness check passed, 1 otherwise; the report is
Markdown on stdout (and in ``--markdown FILE``), progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .bench import Bench
from .catalog import build_all
from .harness import log
from .pieces import run_pieces
from .profiles import profile_breakdown
from .report import Profiles, report
from .scaling import run_scaling
from .timing import run_cells

DESCRIPTION = "Benchmark kitsession-wsgi against its peers, in one process, with direct WSGI calls."


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer iterations and a smaller large store")
    mode.add_argument("--smoke", action="store_true",
                      help="two requests per cell: correctness checks only, no timing claims (for tests)")
    parser.add_argument("--only", action="append", metavar="PATTERN",
                        help="scenario keys to run (glob or substring; repeatable); bare Flask always runs")
    parser.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--reps", type=int, metavar="N", help="repetitions per cell (default 5; 2 with --smoke)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the store-size section")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                        help="profile each adapter's read path with a sampling profiler (default: on in full mode)")
    parser.add_argument("--list", action="store_true", help="list the scenario keys and exit")
    return parser


def count_round_trips(bench: Bench) -> dict[str, tuple[str, str]]:
    """(store calls, server commands) per scenario that counts them; a failed count fails the scenario."""
    counts: dict[str, tuple[str, str]] = {}
    for scenario in bench.scenarios:
        if scenario.skip or scenario.failure or scenario.count_calls is None:
            continue
        try:
            calls = scenario.count_calls()
            server = scenario.count_server() if scenario.count_server else "-"
            counts[scenario.key] = (calls, server)
        except Exception as exc:
            bench.fail(scenario, f"round-trip count: {type(exc).__name__}: {exc}")
    return counts


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    chosen = "smoke" if args.smoke else ("quick" if args.quick else "full")
    bench = Bench(chosen, args.only)
    if args.reps:
        bench.settings = {**bench.settings, "reps": max(1, args.reps)}
    started = time.perf_counter()
    try:
        build_all(bench)
        if args.list:
            for scenario in bench.scenarios:
                print(f"{scenario.key}\t{scenario.title}\t{scenario.skip or ''}")
            return 0
        cells = run_cells(bench)
        counts = count_round_trips(bench)
        pieces = run_pieces(bench) if chosen != "smoke" else []
        scaling = [] if args.no_scaling else run_scaling(bench)
        profiles: Profiles = {}
        if args.profile if args.profile is not None else chosen == "full":
            for scenario in bench.scenarios:
                if scenario.profile_target is None or scenario.failure or (scenario.key, "read") not in cells:
                    continue
                log(f"profiling {scenario.key}")
                seconds = max(bench.settings["profile_seconds"], 0.3)
                profiles[scenario.key] = profile_breakdown(scenario.profile_target, seconds,
                                                           cells[(scenario.key, "read")].median)
        text = report(bench, cells, counts, scaling, profiles, pieces, time.perf_counter() - started)
    finally:
        bench.close()
    sys.stdout.write(text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    return 1 if bench.failures else 0
