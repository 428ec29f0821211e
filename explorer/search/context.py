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
PATH_FIELDS = (("data", "root"), ("pretrain", "from_checkpoint"), ("finetune", "weights"))


def absolute_paths(recipe_dict: dict) -> dict:
    """User paths resolved against the current directory (trials run elsewhere)."""
    for section, key in PATH_FIELDS:
        value = recipe_dict.get(section, {}).get(key)
        if value:
            recipe_dict[section][key] = str(Path(value).expanduser().resolve())
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


def baseline_rel(key: str) -> str:
    """A baseline run's folder in the storage, shared by every experiment there."""
    return f"{BASELINES}/{key}"


def baseline_key(recipe: Recipe, data_fingerprint: str, scale: str) -> str:
    """A baseline run's cache key: its recipe, the data's content and the scale."""
    d = recipe.model_dump(mode="json")
    for key in ("root", "loader_workers"):  # where the data is mounted changes nothing
        d["data"].pop(key)
    return config_hash({"recipe": d, "data": data_fingerprint, "scale": scale})
