"""CXR Recipe Explorer: search MAE recipes for chest X-rays, compare them with DenseNet-121.

Where things live (data flows one way, top to bottom; docs/architecture.md draws it):

- ``explorer.spec``     what to run: the typed recipe, recipes and scales, the search spec
- ``explorer.search``   the run, ``python -m explorer.search``: Ray Tune + Optuna + ASHA, the
                        baselines, test scoring, then the results store and the report
- ``explorer.train``    the pre-training and fine-tuning worker loops (inside a trial)
- ``explorer.data``     data sources, the pre-resized cache, transforms
- ``explorer.models``   MAE, the ViT classifier with checkpoint import, CNN baselines
- ``explorer.storage``  the storage root: atomic files, locks, S3 through a mirror
- ``explorer.results``  the results store (Parquet) that the report reads
- ``explorer.metrics``  AUCs, patient bootstrap intervals, paired tests
- ``explorer.report``   ``python -m explorer.report RUN_DIR``: the HTML report

and, read by all of them: ``names`` (the metric, file names, the architectures), ``errors``
(``UserError``: one line, exit code 2) and ``schema`` (the strict base of every typed config).
"""

__version__ = "0.1.0"
