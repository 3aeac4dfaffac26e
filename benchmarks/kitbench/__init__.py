"""kitbench: the benchmark of kitsession-wsgi against its peers (run it with ``benchmarks/run.py``).

Each module is readable alone:

* :mod:`kitbench.harness`: one request (a direct WSGI call), a scenario (one row)
  and its checks, the shared test apps, counting store calls;
* :mod:`kitbench.timing`: warm-up, timed loops, the interleaved A B A B ratios
  against bare Flask;
* :mod:`kitbench.servers`: the private memcached / Redis / Redis Cluster of a run,
  the peers' packages, server-side command counts;
* :mod:`kitbench.bench`: the state of one run (mode, scenarios, failures);
* :mod:`kitbench.catalog`: every row of the report, in order, by key;
* :mod:`kitbench.peers`: bare Flask, Flask's cookie session, Flask-Session, Beaker;
* :mod:`kitbench.scenarios`: this library's rows and the round-trip rules;
* :mod:`kitbench.roundtrips`: one raw store round trip, alone and in place;
* :mod:`kitbench.scaling`: small against large stores;
* :mod:`kitbench.pieces`: the pieces of a read, each timed alone;
* :mod:`kitbench.profiles`: ``--profile``, the sampling profiler and its categories;
* :mod:`kitbench.verdicts`: the targets (MET / MISSED);
* :mod:`kitbench.report`: the Markdown report;
* :mod:`kitbench.cli`: the command line.

Only the package's public API is used (see ``benchmarks/README.md``).
"""
