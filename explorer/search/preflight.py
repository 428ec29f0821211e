"""What a search may produce, checked before anything is written.

The spec's models check each value on its own. What fails only where values meet (an image
size the patch does not divide, a decoder width its heads do not divide, an odd batch under
Mixup, betas the optimizer refuses, an image too small for DenseNet's pooling) used to fail in
every trial, after the experiment record was written, so the name was then stuck. Here, for
every recipe the search can produce at its extremes, plus its start points and baselines, the
trials' own constructors run: the MAE and the classifier with a forward pass on PyTorch's meta
device (shapes only: no memory, no arithmetic), the optimizer, Mixup and the transforms. Rules
that depend on every value of a range, not only its ends (divisibility), are checked over all
of its values.

``check_trainable`` does the same for what depends on the data (batch sizes against the
training split), once the data is loaded and still before anything is written.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from explorer.errors import SpecError, UserError
from explorer.search.buildcheck import MAX_SEED, check_build, even_batch

if TYPE_CHECKING:
    from explorer.spec import LoadedSpec, ParamSpace, Recipe

#: An experiment name is a folder name, with room for the suffixes added to it.
MAX_NAME = 100
#: Searched parameters whose values meet, when a model is built or in the recipe's own
#: cross-field rules (warm-up within the epochs, crop scale low <= high, cache above the eval
#: resize): every combination of their extremes is built. Any other parameter is built at its
#: extremes one at a time.
INTERACTING = (
    "data.image_size", "data.eval_crop_pct", "data.cache_size", "model.arch", "model.patch_size",
    "model.global_pool", "pretrain.mask_ratio", "pretrain.decoder_dim", "pretrain.decoder_depth",
    "pretrain.decoder_heads", "pretrain.norm_pix_loss", "finetune.batch_size", "finetune.mix",
    "pretrain.epochs", "pretrain.warmup_epochs", "finetune.epochs", "finetune.warmup_epochs",
    "pretrain.crop_scale.0", "pretrain.crop_scale.1", "finetune.crop_scale.0",
    "finetune.crop_scale.1",
)
MAX_CORNERS = 64
#: The data fields a search may vary: how images are seen, never which images validation and
#: test hold or what their labels are (trials would be scored on different things, and the
#: report joins every trial's predictions with one label table).
SEARCHABLE_DATA = ("data.image_size", "data.eval_crop_pct", "data.cache_size", "data.mean",
                   "data.std", "data.loader_workers", "data.images.train")
#: Fixed for the whole search: the trial placement, and where weights come from.
UNSEARCHABLE = ("resources.", "pretrain.enabled", "pretrain.from_checkpoint", "finetune.weights")
#: Patient-bootstrap resamples the report can hold in memory ([resamples, findings] AUCs per
#: model, and the resampled patients per draw).
MAX_BOOTSTRAP = 100_000
#: Every value of a range is enumerated for the divisibility rules up to this many.
MAX_VALUES = 4096


# -- names ------------------------------------------------------------------------------------
def check_name(name: str, what: str) -> None:
    if len(name) > MAX_NAME:
        raise UserError(f"{what}: a name of {len(name)} characters; use at most {MAX_NAME}")


# -- what the search may vary ---------------------------------------------------------------
def _check_searchable(loaded: LoadedSpec, where: str) -> None:
    for name in loaded.spec.search.params:
        if name.startswith("data.") and not name.startswith(SEARCHABLE_DATA):
            raise SpecError(
                f"{where}: search.params.{name}: cannot be searched: trials would see different "
                f"validation or test images or labels, so their scores could not be compared; "
                f"set it in the spec's data section (searchable: {', '.join(SEARCHABLE_DATA)})")
        if name.startswith(UNSEARCHABLE):
            raise SpecError(f"{where}: search.params.{name}: cannot be searched: it is fixed "
                            f"for the whole search; set it in the spec instead")


def _contains(space: ParamSpace, value: Any) -> bool:
    if space.type == "categorical":   # as Optuna compares them, but True is not 1
        return any(value == c and isinstance(value, bool) == isinstance(c, bool)
                   for c in space.choices or [])
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if space.type == "int" and not float(value).is_integer():
        return False
    return space.low <= value <= space.high


def _describe(space: ParamSpace) -> str:
    if space.type == "categorical":
        return f"the choices {space.choices}"
    return f"the range [{space.low:g}, {space.high:g}]"


def _check_baseline_runs(loaded: LoadedSpec, where: str) -> None:
    """Each baseline run once: two equal runs share one cache folder and one result row."""
    seen: dict[str, str] = {}
    for i, b in enumerate(loaded.spec.baselines):
        seeds = b.seeds
        if (isinstance(seeds, int) and seeds < 1) or seeds == []:
            raise SpecError(f"{where}: baselines[{i}].seeds: {seeds!r} gives no run; use a "
                            "count of at least 1 or a list of seeds (baselines: [] for none)")
        for seed in loaded.spec.baseline_seeds(b):
            key = json.dumps([b.recipe, b.overrides, seed], sort_keys=True, default=str)
            if key in seen:
                raise SpecError(f"{where}: baselines[{i}]: {b.recipe} seed {seed} is already "
                                f"run by {seen[key]}: list each baseline run once")
            seen[key] = f"baselines[{i}]"


def _check_conditions(loaded: LoadedSpec, where: str) -> None:
    params = loaded.spec.search.params
    for name, space in params.items():
        for other, wanted in (space.when or {}).items():
            if other not in params:
                continue   # spec._check_params names it
            values = wanted if isinstance(wanted, list) else [wanted]
            never = [v for v in values if not _contains(params[other], v)]
            if never:
                raise SpecError(f"{where}: search.params.{name}.when: {other} never takes "
                                f"{never[0]!r} (it searches {_describe(params[other])}), so "
                                f"{name} would never be searched")
    for i, point in enumerate(loaded.spec.search.points_to_evaluate):
        for name, value in point.items():
            if name in params and not _contains(params[name], value):
                raise SpecError(f"{where}: search.points_to_evaluate[{i}]: {name} {value!r} is "
                                f"outside {_describe(params[name])} that search.params gives it")


# -- the recipes a search can produce -------------------------------------------------------
def _corners(loaded: LoadedSpec) -> list[dict[str, Any]]:
    """Parameter sets at the extremes: every combination of the interacting parameters' ends
    (at most ``MAX_CORNERS``; beyond, each alone), then each other parameter's ends alone."""
    params = loaded.spec.search.params
    joint = {n: params[n].bounds() for n in params if n in INTERACTING}
    sets: list[dict[str, Any]] = []
    if joint and math.prod(len(v) for v in joint.values()) <= MAX_CORNERS:
        sets += [dict(zip(joint, combo)) for combo in itertools.product(*joint.values())]
    else:
        sets += [{n: v} for n, values in joint.items() for v in values]
    sets += [{n: v} for n in params if n not in joint for v in params[n].bounds()]
    return sets


def search_recipes(loaded: LoadedSpec, where: str) -> list[tuple[str, Recipe]]:
    """(what it is, recipe) for the spec's recipe, its corners, start points and baselines."""
    out: list[tuple[str, Recipe]] = [("the recipe", loaded.base)]
    for params in _corners(loaded):
        shown = ", ".join(f"{k} {v!r}" for k, v in params.items())
        out.append(_resolved(loaded, f"the search space's extreme {shown}", where, params))
    for i, point in enumerate(loaded.spec.search.points_to_evaluate):
        out.append(_resolved(loaded, f"search.points_to_evaluate[{i}]", where, point))
    for b in loaded.spec.baselines:
        label = f"baselines ({b.recipe})"
        out.append((label, loaded.baseline_recipe(b, 0, where=f"{where}: {label}")))
    return out


def _resolved(loaded: LoadedSpec, label: str, where: str, params: dict
              ) -> tuple[str, Recipe]:
    """Values that pass alone can still fail together (e.g. warm-up above the epochs)."""
    try:
        return label, loaded.recipe_for(params)
    except SpecError as e:
        msg = str(e).removeprefix(f"trial parameters {params}: ")
        raise SpecError(f"{where}: {label}: {msg}") from None


# -- rules over every value of a range ------------------------------------------------------
def _every_value(space: ParamSpace) -> list[Any] | None:
    """All values a parameter can take, or None for a continuous or huge range."""
    if space.type == "categorical":
        return list(space.choices or [])
    if space.type == "float" and space.step is None:
        return None
    n = space.n_values()
    if n > MAX_VALUES:
        return None
    cast = int if space.type == "int" else float
    return [cast(space.low + i * (space.step or 1)) for i in range(int(n))]


def _rules(r: Recipe) -> list[tuple[tuple[str, ...], Callable[..., None]]]:
    from explorer.models.mae import check_decoder
    from explorer.models.vit import check_grid

    rules: list[tuple[tuple[str, ...], Callable[..., None]]] = [
        (("finetune.batch_size", "finetune.mix"), even_batch)]
    if r.model.family == "vit":
        rules.append((("data.image_size", "model.patch_size"), check_grid))
    if r.uses_mae_pretraining:
        rules.append((("pretrain.decoder_dim", "pretrain.decoder_heads"), check_decoder))
    return rules


def _check_every_value(loaded: LoadedSpec, where: str) -> None:
    from explorer.spec.recipes import get_path

    params, base = loaded.spec.search.params, loaded.base
    for fields, rule in _rules(base):
        searched = [f for f in fields if f in params]
        if not searched:
            continue   # the corners build it
        options = [(_every_value(params[f]) or params[f].bounds()) if f in params
                   else [get_path(base, f)] for f in fields]
        if math.prod(len(o) for o in options) > MAX_VALUES * 16:
            continue
        for combo in itertools.product(*options):
            try:
                rule(*combo)
            except SpecError as e:
                shown = ", ".join(f"{f} {v!r}" for f, v in zip(fields, combo) if f in params)
                raise SpecError(f"{where}: the search space reaches {shown}: {e}") from None


def check_loaded_spec(loaded: LoadedSpec, where: str) -> None:
    """Everything above, for a spec that passed its own validation."""
    spec = loaded.spec
    check_name(spec.name, f"{where}: name")
    _check_searchable(loaded, where)
    _check_conditions(loaded, where)
    seeds = [("search.searcher.seed", spec.search.searcher.seed)] + [
        (f"baselines ({b.recipe}) seed", s) for b in spec.baselines
        for s in spec.baseline_seeds(b)]
    for what, seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise SpecError(f"{where}: {what} {seed} is outside 0 to {MAX_SEED}")
    _check_baseline_runs(loaded, where)
    if spec.bootstrap > MAX_BOOTSTRAP:
        raise SpecError(f"{where}: bootstrap {spec.bootstrap:,} resamples: the report holds "
                        f"them in memory; use at most {MAX_BOOTSTRAP:,} (2000 is the default)")
    _check_every_value(loaded, where)
    built: set[str] = set()
    for label, recipe in search_recipes(loaded, where):
        check_build(label, recipe, where, built)


# -- what depends on the data ---------------------------------------------------------------
def check_trainable(loaded: LoadedSpec, n_train: int) -> None:
    """Batches every trial will form from ``n_train`` training images: DenseNet's batch norm
    needs two images in a batch, Mixup an even number."""
    from explorer.errors import DataError

    params = loaded.spec.search.params
    if "data.images.train" in params:
        n_train = min(n_train, int(min(params["data.images.train"].bounds())))
    for label, r in search_recipes(loaded, "spec"):
        f, workers = r.finetune, r.resources.workers
        per_worker = n_train // workers
        if per_worker == 0:
            raise DataError(f"{label}: the training split has {n_train} image(s), fewer than "
                            f"resources.workers ({workers}): use more training images")
        batch = min(f.batch_size, per_worker)
        if batch == f.batch_size:
            continue   # full batches only (the loader drops a last, smaller one)
        fix = (f"{n_train} training image(s) are fewer than finetune.batch_size {f.batch_size}"
               f"{f' x {workers} workers' if workers > 1 else ''}, so every step is one batch "
               f"of {batch}")
        if r.model.family == "cnn" and batch < 2:
            raise DataError(f"{label}: {fix}, and {r.model.arch}'s batch norm needs at least "
                            "2 images per batch: use more training images")
        if f.mix != "none" and batch > 1 and batch % 2:
            raise DataError(f"{label}: {fix}, and finetune.mix '{f.mix}' needs an even batch: "
                            "use one more or one fewer training image, or finetune.mix none")
