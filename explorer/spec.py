"""The search spec (``search_spaces/*.yaml``): typed, validated, overridable with ``--set``.

A spec names a base recipe and a scale, may overlay any recipe section, and declares the searched
parameters as dotted paths into the recipe (``pretrain.mask_ratio``), the searcher (Optuna TPE),
the scheduler (ASHA on fine-tuning epochs) and the baselines. Every mistake is reported as one
line naming the file and key, before anything is created on disk.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from explorer.config import Recipe
from explorer.errors import SpecError
from explorer.recipes import (
    SCALES,
    build_recipe,
    has_path,
    read_yaml,
    resolve_recipe_dict,
    scale_search_defaults,
    set_path,
)
from explorer.validation import one_line

Choice = None | bool | int | float | str
#: Recipe sections whose values change what pre-training produces (and so its cache key).
PRETRAIN_SECTIONS = ("pretrain", "model", "data", "seed")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamSpace(_Strict):
    """One searched parameter: a float/int range (optionally log or stepped) or categorical."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(default=None, gt=0)
    choices: list[Choice] | None = None
    when: dict[str, Choice | list[Choice]] | None = Field(
        default=None, description="sample only when these parameters take these values"
    )

    @model_validator(mode="after")
    def _check(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if len({repr(c) for c in self.choices}) != len(self.choices):
                raise ValueError(f"choices repeat a value: {self.choices}")
            if self.low is not None or self.high is not None:
                raise ValueError("a categorical parameter takes 'choices', not low/high")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} parameter takes low/high, not 'choices'")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs both 'low' and 'high'")
        if not self.low < self.high:
            raise ValueError(f"empty or inverted range: low ({self.low}) must be below high "
                             f"({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("'log' and 'step' cannot be combined")
        if self.type == "int":
            for name in ("low", "high", "step"):
                v = getattr(self, name)
                if v is not None and not float(v).is_integer():
                    raise ValueError(f"an int parameter needs whole numbers ({name}: {v})")
        if self.step is not None:
            n = (self.high - self.low) / self.step
            if not math.isclose(n, round(n), abs_tol=1e-9):
                raise ValueError(f"step {self.step} does not divide the range "
                                 f"[{self.low}, {self.high}]")
        return self

    def bounds(self) -> list[Choice]:
        """The extreme values, to check that the recipe accepts them."""
        if self.type == "categorical":
            return list(self.choices or [])
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]

    def describe(self) -> dict:
        return self.model_dump(exclude_none=True)

    def n_values(self) -> float:
        if self.type == "categorical":
            return len(self.choices or [])
        if self.type == "int":
            return (self.high - self.low) // (self.step or 1) + 1
        if self.step is not None:
            return round((self.high - self.low) / self.step) + 1
        return math.inf


class SearcherSpec(_Strict):
    type: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    n_startup_trials: int = Field(default=10, ge=1,
                                  description="random trials before TPE starts modelling")


class SchedulerSpec(_Strict):
    type: Literal["asha", "none"] = "asha"
    grace_period: int | None = Field(
        default=None, ge=1, description="fine-tuning epochs before any stop (default: a third "
        "of max_t, rounded up: early epochs rank recipes by noise)")
    reduction_factor: float = Field(default=2, gt=1)
    max_t: int | None = Field(default=None, ge=1, description="default: finetune.epochs")


class SearchSpec(_Strict):
    params: dict[str, ParamSpace] = Field(min_length=1)
    num_samples: int = Field(ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)
    searcher: SearcherSpec = Field(default_factory=SearcherSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    points_to_evaluate: list[dict[str, Choice]] = Field(
        default_factory=list, description="configurations tried first (e.g. the study's recipe)"
    )


class BaselineSpec(_Strict):
    recipe: str = "densenet121_baseline"
    seeds: int | list[int] | None = Field(default=None, description="count or list; "
                                          "default: the scale's baseline_seeds")
    overrides: dict[str, Any] = Field(default_factory=dict)


class Spec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    recipe: str
    scale: Literal["smoke", "cpu", "paper"] = "cpu"
    seed: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    pretrain: dict[str, Any] = Field(default_factory=dict)
    finetune: dict[str, Any] = Field(default_factory=dict)
    resources: dict[str, Any] = Field(default_factory=dict)
    search: SearchSpec
    baselines: list[BaselineSpec] = Field(default_factory=lambda: [BaselineSpec()])
    finalists: int = Field(default=3, ge=0, description="top recipes scored once on test")
    bootstrap: int = Field(default=2000, ge=100, description="patient bootstrap resamples")

    def overlays(self) -> tuple[dict, ...]:
        sections = {k: getattr(self, k) for k in ("data", "model", "pretrain", "finetune",
                                                  "resources") if getattr(self, k)}
        if self.seed is not None:
            sections["seed"] = self.seed
        return (sections,) if sections else ()

    def baseline_seeds(self, b: BaselineSpec) -> list[int]:
        seeds = b.seeds
        if seeds is None:
            seeds = int(scale_search_defaults(self.scale).get("baseline_seeds", 3))
        return list(range(seeds)) if isinstance(seeds, int) else list(seeds)


@dataclass
class LoadedSpec:
    """A validated spec plus what was derived from it."""

    spec: Spec
    path: Path | None
    raw: dict            # the spec after --set, as data (stored with the experiment)
    base: Recipe         # the recipe at this scale with the spec's overlays, before search params

    @property
    def max_t(self) -> int:
        return self.spec.search.scheduler.max_t or self.base.finetune.epochs

    @property
    def grace_period(self) -> int:
        """ASHA's first rung: as set, else a third of ``max_t``. Measured at cpu scale, the
        validation AUC of a ViT dips and recovers over its first epochs (warm-up, a head that
        starts at std 2e-5), so a rung at epoch 3 of 15 ranks recipes by noise."""
        return self.spec.search.scheduler.grace_period or math.ceil(self.max_t / 3)

    def recipe_for(self, params: dict[str, Any]) -> Recipe:
        d = resolve_recipe_dict(self.spec.recipe, self.spec.scale, self.spec.overlays(), params)
        return build_recipe(d, where=f"trial parameters {params}")

    def pretrain_params(self) -> list[str]:
        return [p for p in self.spec.search.params if p.split(".")[0] in PRETRAIN_SECTIONS]

    def distinct_pretrainings(self) -> tuple[int, str]:
        """How many different encoders the search will pre-train (an upper bound), and why."""
        if not self.base.uses_mae_pretraining:
            return 0, "the recipe does not pre-train (CNN, pre-training off, or a checkpoint)"
        searched = self.pretrain_params()
        if not searched:
            return 1, "no pre-training parameter is searched: every trial shares one encoder"
        combos = math.prod(self.spec.search.params[p].n_values() for p in searched)
        n = int(min(self.spec.search.num_samples, combos))
        return n, f"searched pre-training parameters: {', '.join(searched)} (at most {n})"


def parse_set(item: str) -> tuple[str, Any]:
    """``key.path=value`` with the value read as YAML (numbers, lists, null)."""
    if "=" not in item:
        raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. --set scale=smoke")
    key, _, text = item.partition("=")
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[\w]+)*", key):
        raise SpecError(f"--set {item!r}: '{key}' is not a dotted key such as data.root")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key, value


def apply_sets(raw: dict, sets: list[str]) -> dict:
    for item in sets:
        key, value = parse_set(item)
        set_path(raw, key, value)
    return raw


def load_spec(path: str | Path, sets: list[str] | tuple[str, ...] = ()) -> LoadedSpec:
    path = Path(path)
    raw = read_yaml(path, "search spec")
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a search spec must be a mapping (see search_spaces/*.yaml)")
    return validate_spec(apply_sets(raw, list(sets)), str(path), path)


def validate_spec(raw: dict, where: str, path: Path | None = None) -> LoadedSpec:
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(one_line(err, Spec, where)) from None
    if spec.scale not in SCALES:  # pragma: no cover - guarded by the Literal
        raise SpecError(f"{where}: unknown scale {spec.scale}")
    base_dict = resolve_recipe_dict(spec.recipe, spec.scale, spec.overlays())
    base = build_recipe(base_dict, where=where)
    loaded = LoadedSpec(spec=spec, path=path, raw=raw, base=base)
    _check_params(loaded, base_dict, where)
    _check_scheduler(loaded, where)
    for b in spec.baselines:
        _check_baseline(loaded, b, where)
    return loaded


def _check_params(loaded: LoadedSpec, base_dict: dict, where: str) -> None:
    params = loaded.spec.search.params
    full = loaded.base.model_dump(mode="json")
    imported = loaded.base.pretrain.from_checkpoint
    for name, space in params.items():
        if imported and name.split(".")[0] in PRETRAIN_SECTIONS[:2]:
            raise SpecError(f"{where}: search.params.{name}: has no effect, the encoder comes "
                            f"from pretrain.from_checkpoint ({imported})")
        if not has_path(full, name):
            top = name.split(".")[0]
            hint = f" (recipe sections: {', '.join(full)})" if top not in full else ""
            raise SpecError(f"{where}: search.params.{name}: no such parameter in recipe "
                            f"'{loaded.spec.recipe}'{hint}")
        for other in (space.when or {}):
            if other not in params:
                raise SpecError(f"{where}: search.params.{name}.when: '{other}' is not a "
                                "searched parameter")
        for value in space.bounds():
            try:
                loaded.recipe_for({name: value})
            except SpecError as err:
                msg = str(err).removeprefix(f"trial parameters { {name: value} }: ")
                raise SpecError(f"{where}: search.params.{name}: value {value!r} is not "
                                f"accepted: {msg}") from None
    for i, point in enumerate(loaded.spec.search.points_to_evaluate):
        unknown = set(point) - set(params)
        if unknown:
            raise SpecError(f"{where}: search.points_to_evaluate[{i}]: "
                            f"{sorted(unknown)[0]} is not a searched parameter")


def _check_scheduler(loaded: LoadedSpec, where: str) -> None:
    sched = loaded.spec.search.scheduler
    epochs = loaded.base.finetune.epochs
    if sched.max_t is not None and sched.max_t > epochs:
        raise SpecError(f"{where}: search.scheduler.max_t ({sched.max_t}) exceeds the "
                        f"fine-tuning budget finetune.epochs ({epochs})")
    if sched.type == "asha" and loaded.grace_period > loaded.max_t:
        raise SpecError(f"{where}: search.scheduler.grace_period ({loaded.grace_period}) exceeds "
                        f"the fine-tuning budget ({loaded.max_t} epochs)")


def _check_baseline(loaded: LoadedSpec, b: BaselineSpec, where: str) -> None:
    from explorer.baselines import baseline_recipe  # late: baselines imports this module

    baseline_recipe(loaded, b, seed=0, where=f"{where}: baselines ({b.recipe})")
