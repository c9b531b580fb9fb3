"""edgepack benchmarks against the peers a user would otherwise use (see docs/BENCHMARKS.md).

Each script (probe, quant, build, fleet) measures edgepack and its peer side by side, interleaved,
and writes one JSON result; `python -m bench.run` runs them all and rewrites docs/BENCHMARKS.md.
"""
