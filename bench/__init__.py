"""Benchmarks: one command each (``python -m bench.<name>``), one table each; see BENCHMARKS.md."""
