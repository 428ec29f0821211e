"""What every stage of a run reads, fixed before the first stage starts: the spec, the
experiment, the data and the cluster. Stages take it as an argument and never change it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from explorer.search.cluster import Cluster
from explorer.search.experiment import Experiment
from explorer.spec import LoadedSpec
from explorer.spec.config import Recipe
from explorer.spec.recipes import config_hash
from explorer.storage import BASELINES

#: Recipe fields holding a user's path: resolved once, as trials run in other folders.
PATH_FIELDS = (("data", "root"), ("pretrain", "from_checkpoint"), ("pretrain", "init_from"),
               ("finetune", "weights"))


def absolute_paths(recipe_dict: dict) -> dict:
    """User paths resolved against the current directory (trials run elsewhere); named starts
    (``imagenet``) stay names, pooled sources' roots are resolved too."""
    from explorer.models.starts import is_named

    for section, key in PATH_FIELDS:
        value = recipe_dict.get(section, {}).get(key)
        if value and not is_named(value):
            recipe_dict[section][key] = str(Path(value).expanduser().resolve())
    for entry in recipe_dict.get("pretrain", {}).get("data") or []:
        if entry.get("root"):
            entry["root"] = str(Path(entry["root"]).expanduser().resolve())
    return recipe_dict


@dataclass(frozen=True)
class RunInputs:
    """A validated spec with its base recipe's paths made absolute: what a run starts from."""

    loaded: LoadedSpec
    base_dict: dict = field(init=False)  # the base recipe, as trials receive it
    base: Recipe = field(init=False)

    def __post_init__(self) -> None:
        base_dict = absolute_paths(self.loaded.base.model_dump(mode="json"))
        object.__setattr__(self, "base_dict", base_dict)
        object.__setattr__(self, "base", self.loaded.base.model_validate(base_dict))


@dataclass(frozen=True)
class RunContext:
    """One run: its inputs, where it is stored, its data (``explorer.data.DataBundle``), the
    cluster it runs on, and whether Ray's own output is shown."""

    inputs: RunInputs
    exp: Experiment
    data: object
    cluster: Cluster
    verbose: bool = False

    @property
    def loaded(self) -> LoadedSpec:
        return self.inputs.loaded

    @property
    def base(self) -> Recipe:
        return self.inputs.base

    @property
    def base_dict(self) -> dict:
        return self.inputs.base_dict

    @property
    def shipped(self):
        """The data as trials receive it: the driver's split plan, without pixels
        (``explorer.data.prepare``)."""
        from explorer.data.prepare import ship

        return ship(self.data, self.base.data)


def baseline_rel(key: str) -> str:
    """A baseline run's folder in the storage, shared by every experiment there."""
    return f"{BASELINES}/{key}"


def baseline_key(recipe: Recipe, data_fingerprint: str, scale: str) -> str:
    """A baseline run's cache key: its recipe, the data's content and the scale (and, for one
    that pre-trains on a pool, what the pool holds, not where it is mounted)."""
    d = recipe.model_dump(mode="json")
    for key in ("root", "loader_workers"):  # where the data is mounted changes nothing
        d["data"].pop(key)
    parts = {"recipe": d, "data": data_fingerprint, "scale": scale}
    if recipe.pretrains and recipe.pretrain.data:
        from explorer.search.pools import planned_pool

        for entry in d["pretrain"]["data"]:
            entry.pop("root", None)
        parts["pool"] = planned_pool(recipe).fingerprint
    return config_hash(parts)
