#!/usr/bin/env python
"""Benchmark kitsession-wsgi against its peers, in one process, with direct WSGI calls.

Run ``make bench`` (installs ``benchmarks/requirements.txt``, then runs this
script) or ``.venv/bin/python benchmarks/run.py [--quick | --smoke] [--only
PATTERN] [--markdown FILE] [--reps N] [--no-scaling] [--profile] [--list]``.
The report is Markdown on stdout; progress goes to stderr.

``benchmarks/README.md`` says how it measures, what it checks on every run and
how to read the report; the code is the ``kitbench`` package next to this
script (``kitbench/__init__.py`` lists its modules).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the repository root: kitsession_wsgi, and tests/servers.py for the private memcached and Redis
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kitbench.cli import main  # noqa: E402  (benchmarks/ is on sys.path as this script's directory)

if __name__ == "__main__":
    sys.exit(main())
