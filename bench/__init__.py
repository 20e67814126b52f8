"""The edge-actors benchmark harness: ``python -m bench --help``.

Each benchmark is a module of this package registered in :mod:`bench._registry`;
the generic machinery is :mod:`bench._core` (contenders, interleaved sampling,
stats, ratios), :mod:`bench._report` and :mod:`bench._charts` (JSON, Markdown,
PNG) and :mod:`bench.__main__` (the command line). :func:`bench.membw.copy_bandwidth`
is the memory-bandwidth probe other benchmarks use as a physical floor.
"""
