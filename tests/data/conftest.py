"""Fixtures of the data tests (helpers live in ``data_files.py``)."""

from data_files import nih_folder

__all__ = ["nih_folder"]
