"""From a spec file and ``--set`` values to a validated ``LoadedSpec``.

Every mistake is reported as one line naming the file and key, before anything is created on
disk: the spec's own types first, then the checks that need its recipe (a searched parameter
must exist in the recipe and its extreme values must be accepted by it, the scheduler must fit
the fine-tuning budget, every baseline must resolve).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pydantic import ValidationError

from explorer.errors import SpecError
from explorer.overrides import apply_sets, parse_set  # noqa: F401  (re-exported)
from explorer.schema import one_line
from explorer.spec.recipes import (
    SCALES,
    build_recipe,
    has_path,
    read_yaml,
    resolve_recipe_dict,
)
from explorer.spec.search_spec import PRETRAIN_SECTIONS, BaselineSpec, LoadedSpec, Spec


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
    if spec.tracking.mlflow and importlib.util.find_spec("mlflow") is None:
        raise SpecError(f"{where}: tracking.mlflow: the mlflow package is not installed; "
                        "pip install 'cxr-recipe-explorer[track]' (or mlflow-skinny)")
    _check_params(loaded, base_dict, where)
    _check_visible_patches(loaded, where)
    _check_scheduler(loaded, where)
    _check_pretraining(loaded, where)
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


def _check_visible_patches(loaded: LoadedSpec, where: str) -> None:
    """MAE must see a patch in every trial: checked at the space's worst corner (highest mask
    ratio, fewest patches), since two values can fail together where each passes alone."""
    from explorer.models.mae import check_visible_patches

    if not loaded.base.uses_mae_pretraining:
        return
    params, worst = loaded.spec.search.params, {}
    for name, pick in (("pretrain.mask_ratio", max), ("data.image_size", min),
                       ("model.patch_size", max)):
        values = [v for v in params[name].bounds() if isinstance(v, (int, float))] \
            if name in params else []
        if values:
            worst[name] = pick(values)
    r = loaded.recipe_for(worst) if worst else loaded.base
    try:
        check_visible_patches(r.data.image_size, r.model.patch_size, r.pretrain.mask_ratio)
    except SpecError as e:
        corner = ", ".join(f"{k} {v}" for k, v in worst.items())
        raise SpecError(f"{where}: {e}" + (f" (the search space's worst case: {corner})"
                                           if corner else "")) from None


def _check_scheduler(loaded: LoadedSpec, where: str) -> None:
    sched = loaded.spec.search.scheduler
    epochs = loaded.base.finetune.epochs
    if sched.max_t is not None and sched.max_t > epochs:
        raise SpecError(f"{where}: search.scheduler.max_t ({sched.max_t}) exceeds the "
                        f"fine-tuning budget finetune.epochs ({epochs})")
    if sched.type == "asha" and loaded.grace_period > loaded.max_t:
        raise SpecError(f"{where}: search.scheduler.grace_period ({loaded.grace_period}) exceeds "
                        f"the fine-tuning budget ({loaded.max_t} epochs)")


def _check_pretraining(loaded: LoadedSpec, where: str) -> None:
    pre, base = loaded.spec.search.pretraining, loaded.base
    if not pre.staged:
        return
    key = "search.pretraining." + ("fidelity" if pre.fidelity else "stage")
    if not base.uses_mae_pretraining:
        raise SpecError(f"{where}: {key}: the recipe does not pre-train (a CNN, pre-training "
                        "off, or pretrain.from_checkpoint)")
    if base.resources.workers != 1:
        raise SpecError(f"{where}: {key}: the pre-training stage trains each encoder as one "
                        f"Ray task on one worker; resources.workers is {base.resources.workers}")
    if pre.fidelity and len(pre.fidelity.epochs(base.pretrain.epochs)) < 2:
        raise SpecError(f"{where}: {key}.milestones: {pre.fidelity.milestones} of "
                        f"{base.pretrain.epochs} pre-training epochs leave no milestone before "
                        "the end")


def _check_baseline(loaded: LoadedSpec, b: BaselineSpec, where: str) -> None:
    loaded.baseline_recipe(b, seed=0, where=f"{where}: baselines ({b.recipe})")
