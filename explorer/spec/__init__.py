"""What to run: the typed recipe, the recipes and scales as data, and the search spec.

- ``config``       ``Recipe``: everything one trial needs, from data to resources (typed)
- ``recipes``      ``recipes/*.yaml``, scale overlays (smoke | cpu | paper), dotted paths, hashes
- ``search_spec``  ``Spec`` (a ``search_spaces/*.yaml`` file as types) and ``LoadedSpec``
- ``load``         ``load_spec``: file + ``--set`` -> a validated ``LoadedSpec``, one-line errors
- ``baselines``    a CNN baseline's recipe, like for like with the search it is compared to

Nothing here needs torch or Ray: a spec is checked before either starts.
"""

from explorer.spec.config import Recipe
from explorer.spec.load import apply_sets, load_spec, parse_set, validate_spec
from explorer.spec.recipes import SCALES, build_recipe, config_hash, resolve_recipe
from explorer.spec.search_spec import BaselineSpec, LoadedSpec, ParamSpace, SearchSpec, Spec

__all__ = [
    "SCALES",
    "BaselineSpec",
    "LoadedSpec",
    "ParamSpace",
    "Recipe",
    "SearchSpec",
    "Spec",
    "apply_sets",
    "build_recipe",
    "config_hash",
    "load_spec",
    "parse_set",
    "resolve_recipe",
    "validate_spec",
]
