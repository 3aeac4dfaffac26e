"""Timing: warm-up and calibration, timed loops, and the interleaved A B A B ratios against bare Flask.

Absolute times on a shared machine drift by tens of percent within seconds, so
no cell is timed alone: each repetition of a cell alternates with the bare
Flask app in ``subrounds`` pairs (bare, cell, bare, cell, ...), a repetition's
ratio is the median of its pairs' ratios, and "x bare" is the median over the
repetitions.  The garbage collector is paused inside a timed loop, as
``timeit`` does.  Wall-clock time is the figure that counts; this thread's CPU
time is kept beside it (steadier on a busy machine, blind to time spent
waiting for a server).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from .bench import Bench
from .harness import Scenario, log


def timed_both(call: Callable[[], Any], n: int) -> tuple[float, float]:
    """Wall-clock and this thread's CPU microseconds per call over ``n`` calls, GC paused."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        loop = range(n)
        cpu_start = time.thread_time_ns()
        start = time.perf_counter_ns()
        for _ in loop:
            call()
        elapsed = time.perf_counter_ns() - start
        cpu = time.thread_time_ns() - cpu_start
    finally:
        if enabled:
            gc.enable()
    return elapsed / n / 1000.0, cpu / n / 1000.0


def timed(call: Callable[[], Any], n: int) -> float:
    """Wall-clock microseconds per call (see :func:`timed_both`)."""
    return timed_both(call, n)[0]


def calibrate(call: Callable[[], Any], settings: dict[str, Any]) -> int:
    """Warm ``call`` up and choose how many calls make one timed cell."""
    deadline = time.perf_counter() + settings["warmup_seconds"]
    calls = 0
    start = time.perf_counter()
    while True:
        call()
        calls += 1
        if calls >= 3 and time.perf_counter() >= deadline:
            break
    per_call = (time.perf_counter() - start) / calls
    if settings["cell_seconds"] <= 0:
        return int(settings["min_n"])
    n = int(settings["cell_seconds"] / max(per_call, 1e-7))
    return int(max(settings["min_n"], min(settings["max_n"], n)))


class Cell:
    """One scenario's read or write: per repetition, the medians of its interleaved sub-rounds."""

    def __init__(self, scenario: Scenario, kind: str) -> None:
        self.scenario = scenario
        self.kind = kind
        self.n = 0
        self.times: list[float] = []
        self.baselines: list[float] = []  # bare Flask, measured in the same repetition, interleaved
        self.cpu_times: list[float] = []
        self.cpu_baselines: list[float] = []
        self.rep_ratios: list[float] = []
        self.rep_cpu_ratios: list[float] = []

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def ratio(self) -> float:
        return statistics.median(self.rep_ratios)

    @property
    def cpu_ratio(self) -> float:
        return statistics.median(self.rep_cpu_ratios)


Cells = dict[tuple[str, str], Cell]


def run_cells(bench: Bench) -> Cells:
    """Every cell, in ``reps`` repetitions; each repetition alternates bare Flask and the cell in sub-rounds.

    A repetition is ``subrounds`` pairs (bare Flask, then the cell), each pair a
    fraction of the cell's requests; its ratio is the median of the pairs'
    ratios.  Every cell's check runs after its warm-up and after each
    repetition; a failed check fails the scenario.
    """
    settings = bench.settings
    subrounds = max(1, settings.get("subrounds", 1))
    bare = next(s for s in bench.scenarios if s.key == "bare")
    bare_call = bare.calls["read"]
    cells: Cells = {}
    for scenario in bench.scenarios:
        for kind in scenario.calls:
            cells[(scenario.key, kind)] = Cell(scenario, kind)
    log("warming up and calibrating")
    bare_n = max(1, calibrate(bare_call, settings) // subrounds)
    for cell in list(cells.values()):
        try:
            cell.n = max(settings["min_n"] if subrounds == 1 else 2,
                         calibrate(cell.scenario.calls[cell.kind], settings) // subrounds)
            cell.scenario.checks[cell.kind]()
        except Exception as exc:
            bench.fail(cell.scenario, f"{cell.kind} warm-up: {type(exc).__name__}: {exc}")
            cells.pop((cell.scenario.key, cell.kind))
    for rep in range(settings["reps"]):
        log(f"repetition {rep + 1}/{settings['reps']}")
        order = list(cells.values())
        if rep % 2:
            order.reverse()  # position effects cancel out across repetitions
        for cell in order:
            if cell.scenario.failure:
                continue
            gc.collect()
            pairs = []
            try:
                for _ in range(subrounds):
                    baseline, baseline_cpu = timed_both(bare_call, bare_n)
                    elapsed, cpu = timed_both(cell.scenario.calls[cell.kind], cell.n)
                    pairs.append((elapsed, baseline, cpu, baseline_cpu))
                cell.scenario.checks[cell.kind]()
            except Exception as exc:
                bench.fail(cell.scenario, f"{cell.kind}: {type(exc).__name__}: {exc}")
                continue
            cell.times.append(statistics.median(p[0] for p in pairs))
            cell.baselines.append(statistics.median(p[1] for p in pairs))
            cell.cpu_times.append(statistics.median(p[2] for p in pairs))
            cell.cpu_baselines.append(statistics.median(p[3] for p in pairs))
            cell.rep_ratios.append(statistics.median(p[0] / p[1] for p in pairs))
            cell.rep_cpu_ratios.append(statistics.median(p[2] / p[3] for p in pairs if p[3] > 0))
    return {key: cell for key, cell in cells.items() if cell.times and not cell.scenario.failure}


def interleaved_pair(call_a: Callable[[], Any], call_b: Callable[[], Any], settings: dict[str, Any],
                     check_a: Callable[[], None], check_b: Callable[[], None]) -> tuple[float, float, float]:
    """Median us of a and b, and the median ratio b/a, timed in interleaved sub-rounds (a b a b ...)."""
    subrounds = max(1, settings.get("subrounds", 1))
    n = max(2, min(calibrate(call_a, settings), calibrate(call_b, settings)) // subrounds)
    a_times, b_times, ratios = [], [], []
    for _ in range(settings["reps"]):
        gc.collect()
        pairs = [(timed(call_a, n), timed(call_b, n)) for _ in range(subrounds)]
        check_a()
        check_b()
        a_times.append(statistics.median(a for a, _ in pairs))
        b_times.append(statistics.median(b for _, b in pairs))
        ratios.append(statistics.median(b / a for a, b in pairs))
    return statistics.median(a_times), statistics.median(b_times), statistics.median(ratios)
