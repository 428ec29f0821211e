"""The run: ``python -m explorer.search SPEC`` searches recipes with Ray Tune + Optuna + ASHA,
trains the baselines beside it, scores the finalists on test once, and writes the results
store and the report. Every stage resumes after an interruption.

Read in this order (the flow of one run):

- ``cli``         the command line: checks that need no Ray, then Ray, then the pipeline
- ``experiment``  the experiment's record in the storage: its spec, extensions, stage times
- ``dryrun``      ``--dry-run``: what a search would do and roughly cost
- ``context``     ``RunInputs`` / ``RunContext``: what every stage reads, fixed before they run
- ``cluster``     Ray: the process settings, ``connect``, whether a trial fits, shared storage
- ``resources``   what one trial reserves and how many run at once
- ``pipeline``    ``prepare`` (data and weights, before Ray) and ``Pipeline``: stages in order
- ``stages``      the search Tuner, the baselines Tuner, the finalists' test scoring
- ``tuning``      the Optuna searcher, ASHA, and restoring a Tuner pointed at this process
- ``trial``       the Tune trainables: one trial = pre-train (if needed) + fine-tune
- ``progress``    the lines a person reads while it runs
- ``study``       keeping the Optuna journal true to what ran, after interruptions
- ``evaluate``    the one-time test scoring
"""

from explorer.search.cli import main

__all__ = ["main"]
