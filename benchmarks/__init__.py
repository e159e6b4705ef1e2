"""The vtex-tracking benchmark suite: ``python -m benchmarks [--quick]``.

Everything is measured as a ratio against baselines run in the same session, interleaved and
repeated, because the machines it runs on are small and shared. See ``run.py``.
"""
