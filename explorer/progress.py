"""Kept for experiments started before the run moved into ``explorer.search`` (issue 13).

Tune pickles its callbacks by module path into ``tuner.pkl``, so an experiment started by the
code before the move names ``explorer.progress.Progress``, and ``--resume`` must unpickle it
(tested: tests/ray/test_resume_from_old_code.py). Import from ``explorer.search.progress``.
"""

from explorer.search.progress import Progress

__all__ = ["Progress"]
