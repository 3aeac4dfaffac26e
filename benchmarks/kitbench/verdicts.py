"""The targets of issue 8: MET / MISSED for each, with the numbers the verdict used.

Every verdict comes from interleaved ratios measured in the same run (never
from absolute times measured minutes apart, which drift far more than the
differences).  The one-round-trip verdicts come from the store calls and
server commands counted by the scenarios (:mod:`kitbench.scenarios`); the
"memory read + 1.15x one round trip" targets use the round trip measured in
place (:mod:`kitbench.roundtrips`), the tight-loop figure printed beside.
Smoke mode makes no timing claims and evaluates nothing.
"""

from __future__ import annotations

import statistics
from typing import Any

from .bench import Bench
from .timing import Cell, Cells


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def target_lines(bench: Bench, cells: Cells, scaling: list[dict[str, Any]]) -> list[str]:
    """MET / MISSED for each target of the issue, from interleaved ratios.

    Differences in microseconds ("memory read + 15 us") are taken from the
    ratios times the bare Flask time of the same repetitions, not from absolute
    times measured minutes apart, which drift far more than the differences.
    """

    def cell(key: str, kind: str = "read") -> Cell | None:
        return cells.get((key, kind))

    lines: list[str] = []
    if bench.mode == "smoke":
        return ["| (all) | not evaluated | smoke mode makes no timing claims |"]
    bare_cell = cell("bare")
    every_baseline = [b for c in cells.values() for b in c.baselines]
    bare_us = statistics.median(every_baseline) if every_baseline else float("nan")

    def extra_us(a: Cell, b: Cell, cpu: bool = False) -> float:
        ratios_a = a.rep_cpu_ratios if cpu else a.rep_ratios
        ratios_b = b.rep_cpu_ratios if cpu else b.rep_ratios
        base = statistics.median(c for x in (a, b) for c in (x.cpu_baselines if cpu else x.baselines))
        return statistics.median(x - y for x, y in zip(ratios_a, ratios_b)) * base

    def verdict(name: str, ok: bool | None, detail: str) -> None:
        mark = "n/a" if ok is None else ("MET" if ok else "MISSED")
        lines.append(f"| {name} | {mark} | {detail} |")

    if bare_cell is not None:
        lines.append(f"| (noise: bare Flask against itself) | - | {bare_cell.ratio:.2f}x; bare Flask {bare_us:.1f} us |")
    mem, mem_w = cell("kit-memory"), cell("kit-memory", "write")
    cl_off, cl_w = cell("fs-cachelib-norefresh"), cell("fs-cachelib", "write")
    if mem:
        verdict("memory via Flask: read <= 1.5x bare Flask", mem.ratio <= 1.5,
                f"{mem.ratio:.2f}x; CPU time {mem.cpu_ratio:.2f}x")
    if mem and cl_off:
        verdict("memory via Flask: read cheaper than Flask-Session cachelib, refresh off",
                mem.ratio < cl_off.ratio, f"{mem.ratio:.2f}x vs {cl_off.ratio:.2f}x bare; CPU time "
                f"{mem.cpu_ratio:.2f}x vs {cl_off.cpu_ratio:.2f}x")
    if mem_w and cl_w:
        verdict("memory via Flask: write cheaper than Flask-Session cachelib write", mem_w.ratio < cl_w.ratio,
                f"{mem_w.ratio:.2f}x vs {cl_w.ratio:.2f}x bare; "
                f"CPU time {mem_w.cpu_ratio:.2f}x vs {cl_w.cpu_ratio:.2f}x")
    mw, raw = cell("kit-middleware"), cell("raw")
    if mw and raw:
        added = extra_us(mw, raw)
        verdict("middleware around a bare WSGI callable adds <= 15 us per read", added <= 15,
                f"+{added:.1f} us; CPU time +{extra_us(mw, raw, cpu=True):.1f} us")
    for store, rt_key in (("memcached", "rt-memcached"), ("redis", "rt-redis")):
        kit, peer, rt = cell(f"kit-{store}"), cell(f"fs-{store}"), cell(rt_key)
        in_place = cell(f"rt-flask-{store}")
        if kit is None:
            continue
        if mem and (rt or in_place):
            extra = extra_us(kit, mem)
            tight = f"tight-loop round trip {rt.median:.1f} us (limit +{1.15 * rt.median:.1f})" if rt else ""
            if in_place is not None and bare_cell is not None:
                trip = extra_us(in_place, bare_cell)
                verdict(f"{store}: read <= memory read + 1.15x one round trip", extra <= 1.15 * trip,
                        f"+{extra:.1f} us over memory; one round trip in place {trip:.1f} us "
                        f"(limit +{1.15 * trip:.1f}); {tight}")
            elif rt is not None:
                verdict(f"{store}: read <= memory read + 1.15x one round trip", extra <= 1.15 * rt.median,
                        f"+{extra:.1f} us over memory; {tight}")
        if peer:
            speedup = peer.ratio / kit.ratio
            verdict(f"{store}: read >= 1.5x faster than Flask-Session defaults, same server", speedup >= 1.5,
                    f"{speedup:.2f}x ({peer.ratio:.2f}x vs {kit.ratio:.2f}x bare)")
        measured = bench.scenario(f"kit-{store}")
        if measured is not None and measured.store_calls:
            calls, commands = measured.store_calls, measured.server_commands
            ok = (calls.get("read") == 1 and calls.get("anon") == 0 and calls.get("bad sig") == 0
                  and commands.get("read", 1) == 1)
            verdict(f"{store}: one round trip per read, none for anonymous requests or bad signatures", ok,
                    "store calls " + ", ".join(f"{k} {v}" for k, v in calls.items())
                    + ("; server commands " + ", ".join(f"{k} {v}" for k, v in commands.items()) if commands else ""))
    sq, sq_w, sq_in, sq_in_w = cell("kit-sqlite"), cell("kit-sqlite", "write"), cell("rt-flask-sqlite"), \
        cell("rt-flask-sqlite", "write")
    if sq and mem:
        extra = extra_us(sq, mem)
        floor = f"; the SELECT alone in place +{extra_us(sq_in, bare_cell):.1f} us" if sq_in and bare_cell else ""
        verdict("Peewee/SQLite read <= memory read + 15 us", extra <= 15,
                f"+{extra:.1f} us; CPU time +{extra_us(sq, mem, cpu=True):.1f} us{floor}")
    fs_sq = cell("fs-sqlite-norefresh")
    if sq and fs_sq:
        speedup = fs_sq.ratio / sq.ratio
        verdict("Peewee/SQLite read >= 5x faster than Flask-Session SQLAlchemy, refresh off", speedup >= 5,
                f"{speedup:.2f}x ({fs_sq.ratio:.2f}x vs {sq.ratio:.2f}x bare)")
    if sq_w and mem_w and sq_in_w and bare_cell:
        extra = extra_us(sq_w, mem_w)
        commit = extra_us(sq_in_w, bare_cell)
        verdict("Peewee/SQLite write <= memory write + 1.3x one SQLite commit", extra <= 1.3 * commit,
                f"+{extra:.1f} us over memory (a read's SELECT and the UPDATE); one UPDATE committed in place "
                f"+{commit:.1f} us (limit +{1.3 * commit:.1f})")
    for row in scaling:
        if "ratio" in row:
            verdict(f"flat scaling, {row['store']} {row['what']}: {row['large']:,} vs {row['small']:,} within 10%",
                    abs(row["ratio"] - 1) <= 0.10, f"{row['ratio']:.2f}x ({fmt(row['a'])} -> {fmt(row['b'])} us)")
    return lines

