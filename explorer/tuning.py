"""Kept for experiments started before the run moved into ``explorer.search`` (issue 13).

Tune pickles these by module path (``tuner.pkl``, ``searcher-state-*.pkl``, the experiment
state), so an experiment started by the code before the move names ``explorer.tuning``, and
``--resume`` must unpickle it (tested: tests/ray/test_resume_from_old_code.py). Import from
``explorer.search.tuning``; nothing else belongs here.
"""

from explorer.search.tuning import ResumableOptunaSearch, suggest_space, trial_dirname

__all__ = ["ResumableOptunaSearch", "suggest_space", "trial_dirname"]
