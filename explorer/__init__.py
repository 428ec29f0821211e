"""CXR Recipe Explorer: search MAE recipes for chest X-rays, compare them with DenseNet-121.

Where things live (data flows one way, top to bottom):

- ``explorer.config``   the typed recipe: data, model, pre-training, fine-tuning, resources
- ``explorer.recipes``  loading ``recipes/*.yaml``, scale overlays, config hashing
- ``explorer.spec``     the search spec (``search_spaces/*.yaml``), validation, ``--set``
- ``explorer.data``     data sources, the pre-resized cache, transforms
- ``explorer.models``   MAE, the ViT classifier with checkpoint import, CNN baselines
- ``explorer.train``    the pre-training and fine-tuning worker loops
- ``explorer.search``   ``python -m explorer.search``: Ray Tune + Optuna + ASHA
- ``explorer.results``  the results store (Parquet) that the report reads
- ``explorer.metrics``  AUCs, patient bootstrap intervals, paired tests
- ``explorer.report``   ``python -m explorer.report RUN_DIR``: the HTML report
"""

__version__ = "0.1.0"
