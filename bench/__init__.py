"""Benchmarks: one command each (``python -m bench.<name>``), one table each.

See docs/benchmarks.md for what each measures and the latest figures.
"""
