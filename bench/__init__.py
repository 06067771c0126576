"""The benchmarks users run: ``python -m bench`` (latency), ``bench.engines``, ``bench.video``,
``bench.annotate``, ``bench.load``, ``bench.soak`` and ``bench.tracking`` (bench/README.md says what each
measures).

What they share with the tests comes from the tools (synthetic weights and photos, the local server in a
subprocess); the tests import nothing from here.
"""
