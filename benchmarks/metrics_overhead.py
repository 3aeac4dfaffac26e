"""What OpenTelemetry metrics add to the read path (a returning client's request).

Managers over a MemoryStore (the fastest store, so the largest relative cost) serve
the same signed cookie through ``initialize_session``:

* ``bare``: the store called directly (``metrics=False, outage_backoff=None``): the
  read path with neither wrapper, the baseline;
* ``off``: ``metrics=False`` and the default ``outage_backoff`` (the store behind its
  breaker, closed: one attribute test per call);
* ``unconfigured``: the defaults (``metrics=True``) with ``opentelemetry-api`` installed
  and no MeterProvider set (``instrumented`` returns the store itself: the same code path
  as ``off``, measured to show it);
* ``sdk``: the defaults once the OpenTelemetry SDK's MeterProvider is the global one (with
  an in-memory reader: recording costs the same whatever the exporter), one histogram
  measurement per store call.

Rounds are interleaved (each round runs every configuration, in a rotating order) so
drift on a shared machine hits all alike; the table gives the median time per request
and the median of the per-round ratios to ``bare``.  The global MeterProvider can be set
only once per process, so ``unconfigured`` is measured before the SDK is configured.

Run: ``python benchmarks/metrics_overhead.py [--rounds 30] [--requests 20000]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from kitsession_wsgi import MemoryStore, SessionManager, metrics


def reader(manager: SessionManager) -> Callable[[], object]:
    session = manager.create_session(user_id=1, data={"cart": [1, 2, 3], "theme": "dark"})
    cookie = {"Cookie": manager.set_session_cookie(session).split(";", 1)[0]}

    def read() -> object:
        loaded = manager.initialize_session(cookie)
        assert not loaded.is_new
        return loaded

    return read


def per_request(read: Callable[[], object], requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        read()
    return (time.perf_counter() - started) / requests


def interleaved(configs: dict[str, Callable[[], object]], rounds: int, requests: int) -> dict[str, list[float]]:
    names = list(configs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for read in configs.values():
        per_request(read, requests // 10)  # warm up
    for index in range(rounds):
        order = names[index % len(names):] + names[:index % len(names)]
        for name in order:
            times[name].append(per_request(configs[name], requests))
    return times


def table(times: dict[str, list[float]], baseline: str) -> list[str]:
    rows = [f"| {'configuration':<14} | {'us/request':>10} | {'ratio to ' + baseline:>12} | {'added ns':>9} |",
            f"|{'-' * 16}|{'-' * 12}|{'-' * 14}|{'-' * 11}|"]
    base = times[baseline]
    for name, values in times.items():
        ratio = statistics.median(v / b for v, b in zip(values, base))
        added = statistics.median(v - b for v, b in zip(values, base)) * 1e9
        rows.append(f"| {name:<14} | {statistics.median(values) * 1e6:>10.2f} | {ratio:>12.3f} | {added:>9.0f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    if not metrics.AVAILABLE:
        raise SystemExit("pip install 'kitsession-wsgi[otel]' opentelemetry-sdk to compare")
    bare = reader(SessionManager(MemoryStore(), keys="bench", metrics=False, outage_backoff=None))
    off = reader(SessionManager(MemoryStore(), keys="bench", metrics=False))
    assert not metrics.configured(), "a MeterProvider is configured already"
    unconfigured = reader(SessionManager(MemoryStore(), keys="bench"))
    lines = table(interleaved({"bare": bare, "off": off, "unconfigured": unconfigured}, args.rounds, args.requests),
                  "bare")
    try:
        from opentelemetry import metrics as otel_metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    except ImportError:
        lines.append("| sdk            | (opentelemetry-sdk not installed)              |")
    else:
        otel_metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
        sdk = reader(SessionManager(MemoryStore(), keys="bench"))
        lines += table(interleaved({"bare": bare, "sdk": sdk}, args.rounds, args.requests), "bare")[3:]
    print(f"read path, MemoryStore, {args.rounds} interleaved rounds of {args.requests} requests")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
