"""The search spec (``search_spaces/*.yaml``) as types: ``Spec`` and its parts, and
``LoadedSpec``, a validated spec with what is derived from it (``load.load_spec`` makes one).

A spec names a base recipe and a scale, may overlay any recipe section, and declares the searched
parameters as dotted paths into the recipe (``pretrain.mask_ratio``), the searcher (Optuna TPE),
the scheduler (ASHA on fine-tuning epochs) and the baselines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from explorer.schema import Strict
from explorer.spec.baselines import baseline_recipe
from explorer.spec.config import Recipe
from explorer.spec.recipes import build_recipe, resolve_recipe_dict, scale_search_defaults

Choice = None | bool | int | float | str
#: Recipe sections whose values change what pre-training produces (and so its cache key).
PRETRAIN_SECTIONS = ("pretrain", "model", "data", "seed")
#: Default pre-training milestones (fractions of pretrain.epochs), chosen by measurement (docs:
#: "probe rank correlation"): at cpu scale on the phantom (10 mask ratios) the linear probe
#: ranks encoders by their final fine-tuned AUC no better than chance before 60% of
#: pre-training (Spearman -0.47 .. +0.22 at epochs 1-5), and from 60% on about as well as it
#: does on the finished encoder (+0.39 at epoch 6, +0.49 at epoch 10; weak either way).
MEASURED_MILESTONES = (0.6,)


class ParamSpace(Strict):
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
            self._check_choices()
        else:
            self._check_range()
        return self

    def _check_choices(self) -> None:
        if not self.choices:
            raise ValueError("a categorical parameter needs a non-empty 'choices' list")
        if len({repr(c) for c in self.choices}) != len(self.choices):
            raise ValueError(f"choices repeat a value: {self.choices}")
        if self.low is not None or self.high is not None:
            raise ValueError("a categorical parameter takes 'choices', not low/high")

    def _check_range(self) -> None:
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
        self._check_grid()

    def _check_grid(self) -> None:
        """Whole numbers for an int range, and a step that divides the range."""
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


class SearcherSpec(Strict):
    type: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    n_startup_trials: int = Field(default=10, ge=1,
                                  description="random trials before TPE starts modelling")


class SchedulerSpec(Strict):
    type: Literal["asha", "none"] = "asha"
    grace_period: int | None = Field(
        default=None, ge=1, description="fine-tuning epochs before any stop (default: a third "
        "of max_t, rounded up: early epochs rank recipes by noise)")
    reduction_factor: float = Field(default=2, gt=1)
    max_t: int | None = Field(default=None, ge=1, description="default: finetune.epochs")


class FidelitySpec(Strict):
    """Multi-fidelity pre-training: every encoder is pre-trained to the first milestone and
    probed; asynchronous successive halving (ASHA, promotion-based) continues the best
    ``1/reduction_factor`` of each milestone from its checkpoint, on the full schedule."""

    probe: Literal["linear", "knn"] = Field(
        default="linear", description="frozen-feature probe scored at each milestone "
        "(explorer.train.probe); chosen by measurement (docs: probe rank correlation)")
    milestones: list[float] = Field(
        default_factory=lambda: list(MEASURED_MILESTONES), min_length=1,
        description="fractions of pretrain.epochs at which encoders are probed and halved")
    reduction_factor: float = Field(default=3, gt=1)

    @model_validator(mode="after")
    def _increasing(self):
        m = self.milestones
        if any(not 0 < x < 1 for x in m) or sorted(set(m)) != m:
            raise ValueError(f"milestones must be increasing fractions of the pre-training "
                             f"epochs, strictly between 0 and 1 (got {m})")
        return self

    def epochs(self, total: int) -> list[int]:
        """The milestones in epochs of a ``total``-epoch pre-training, then ``total``."""
        return [*sorted({max(1, round(f * total)) for f in self.milestones} - {total}), total]


class PretrainingSpec(Strict):
    """How the search pre-trains (``explorer.search.pretraining``)."""

    stage: bool = Field(
        default=False, description="train each distinct encoder as its own Ray job before "
        "the fine-tuning trials that need it, so that no trial holds a device while it waits")
    fidelity: FidelitySpec | None = Field(
        default=None, description="multi-fidelity pre-training (implies stage)")

    @property
    def staged(self) -> bool:
        return self.stage or self.fidelity is not None


class SearchSpec(Strict):
    params: dict[str, ParamSpace] = Field(min_length=1)
    num_samples: int = Field(ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)
    searcher: SearcherSpec = Field(default_factory=SearcherSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    points_to_evaluate: list[dict[str, Choice]] = Field(
        default_factory=list, description="configurations tried first (e.g. the study's recipe)"
    )
    pretraining: PretrainingSpec = Field(default_factory=PretrainingSpec)
    objective: list[Literal["auc", "cost"]] = Field(
        default_factory=lambda: ["auc"], description="[auc] or [auc, cost]: a multi-objective "
        "search, validation mean AUC against the recipe's device-seconds "
        "(explorer.search.objectives)")

    @model_validator(mode="after")
    def _objective(self):
        if self.objective not in (["auc"], ["auc", "cost"]):
            raise ValueError(f"objective must be [auc] or [auc, cost] (got {self.objective})")
        return self

    @property
    def multi_objective(self) -> bool:
        return self.objective == ["auc", "cost"]


class BaselineSpec(Strict):
    recipe: str = "densenet121_baseline"
    seeds: int | list[int] | None = Field(default=None, description="count or list; "
                                          "default: the scale's baseline_seeds")
    overrides: dict[str, Any] = Field(default_factory=dict)


class TrackingSpec(Strict):
    """Where else the trials are logged (``explorer.tracking``; TensorBoard files always are)."""

    mlflow: bool = Field(default=False, description="one MLflow run per trial (extra 'track')")
    mlflow_uri: str | None = Field(default=None, description="MLflow tracking URI (default: "
                                   "$MLFLOW_TRACKING_URI, else sqlite in the experiment folder)")
    mlflow_experiment: str | None = Field(default=None, description="default: the search name")

    @model_validator(mode="after")
    def _used(self):
        if not self.mlflow and (self.mlflow_uri or self.mlflow_experiment):
            raise ValueError("mlflow_uri / mlflow_experiment are set but mlflow is false")
        return self


class Spec(Strict):
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
    checkpoint: dict[str, Any] = Field(default_factory=dict)
    search: SearchSpec
    baselines: list[BaselineSpec] = Field(default_factory=lambda: [BaselineSpec()])
    finalists: int = Field(default=3, ge=0, description="top recipes scored once on test")
    bootstrap: int = Field(default=2000, ge=100, description="patient bootstrap resamples")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)

    def overlays(self) -> tuple[dict, ...]:
        sections = {k: getattr(self, k) for k in ("data", "model", "pretrain", "finetune",
                                                  "resources", "checkpoint") if getattr(self, k)}
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

    def baseline_recipe(self, b: BaselineSpec, seed: int, where: str) -> Recipe:
        """Baseline ``b`` with ``seed``, like for like with this search (``spec.baselines``)."""
        return baseline_recipe(self.base, self.spec.scale, b.recipe, b.overrides, seed, where)

    def baseline_recipes(self) -> list[tuple[BaselineSpec, int, Recipe]]:
        """Every (baseline, seed, resolved recipe) the spec asks for, in order."""
        return [(b, seed, self.baseline_recipe(b, seed, where=f"baselines ({b.recipe})"))
                for b in self.spec.baselines for seed in self.spec.baseline_seeds(b)]
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
