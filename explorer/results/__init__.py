"""Results: what a search leaves behind for the report (and for anyone with pandas).

- ``store``       the Parquet tables and ``meta.json`` under ``RUN_DIR/results/``: their schema,
                  ``write_results`` and ``load_results`` (what the report reads, and all it reads)
- ``collect``     trial records -> the tables, after a search
- ``provenance``  ``meta.json``'s reproducibility facts: versions, commit, hardware, seeds
"""

from explorer.results.store import (
    PARAM_PREFIX,
    STATUSES,
    TABLES,
    Results,
    load_results,
    results_dir,
    write_results,
)

__all__ = [
    "PARAM_PREFIX",
    "STATUSES",
    "TABLES",
    "Results",
    "load_results",
    "results_dir",
    "write_results",
]
