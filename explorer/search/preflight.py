"""What a search's trials will build, built once before anything is written.

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

import functools
import itertools
import json
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from explorer.errors import SpecError, UserError

if TYPE_CHECKING:
    from explorer.spec import LoadedSpec, ParamSpace, Recipe

#: Largest side in pixels of a model input and of a cached image; the paper caches 1024.
MAX_SIDE = 4096
#: Seeds go to numpy (below 2**32) and, scaled by 100_003 per epoch, to torch (below 2**63).
MAX_SEED = 2**31 - 1
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
#: Decoder sizes a preflight build (and a trial) can hold: MAE's largest is 8 x 512.
MAX_DECODER_DEPTH, MAX_DECODER_DIM = 48, 4096
#: Patient-bootstrap resamples the report can hold in memory ([resamples, findings] AUCs per
#: model, and the resampled patients per draw).
MAX_BOOTSTRAP = 100_000
#: A stand-in class count: shapes never depend on it (the data decides it later).
N_CLASSES = 14
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


def _even_batch(batch_size: int, mix: str) -> None:
    if mix != "none" and batch_size > 1 and batch_size % 2:
        raise SpecError(f"finetune.mix '{mix}' needs an even finetune.batch_size (timm's Mixup "
                        f"mixes each image with its mirror in the batch), got {batch_size}")


def _rules(r: Recipe) -> list[tuple[tuple[str, ...], Callable[..., None]]]:
    from explorer.models.mae import check_decoder
    from explorer.models.vit import check_grid

    rules: list[tuple[tuple[str, ...], Callable[..., None]]] = [
        (("finetune.batch_size", "finetune.mix"), _even_batch)]
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


# -- building, on the meta device -----------------------------------------------------------
def _key(**fields: Any) -> str:
    return json.dumps(fields, sort_keys=True, default=str)


@functools.lru_cache(maxsize=16)
def _mae(key: str):
    import torch

    from explorer.models import create_mae

    k = json.loads(key)
    with torch.device("meta"):
        return create_mae(k["arch"], img_size=k["size"], patch_size=k["patch"],
                          decoder_dim=k["dim"], decoder_depth=k["depth"],
                          decoder_heads=k["heads"], norm_pix_loss=k["norm_pix"])


@functools.lru_cache(maxsize=16)
def _classifier(key: str):
    import torch

    from explorer.models import create_cnn, create_vit_classifier

    k = json.loads(key)
    with torch.device("meta"):
        if k["family"] == "cnn":
            model = create_cnn(k["arch"], num_classes=N_CLASSES)
        else:
            model = create_vit_classifier(k["arch"], img_size=k["size"], patch_size=k["patch"],
                                          num_classes=N_CLASSES, global_pool=k["pool"])
        model(torch.empty(2, 3, k["size"], k["size"]))   # shapes: a too-small input fails
    return model


@functools.lru_cache(maxsize=64)
def _mae_forward(key: str, mask_ratio: float) -> None:
    import torch

    size = json.loads(key)["size"]
    with torch.device("meta"):
        _mae(key)(torch.empty(2, 3, size, size), mask_ratio)


def _steps(r: Recipe) -> Iterator[tuple[str, str, Callable[[], Any]]]:
    """(what is built, a key of what decides it, how) for everything a trial of ``r`` builds
    from its recipe. Corners share most of them: a key built once is not built again."""
    import torch

    from explorer.data import build_transform
    from explorer.train.common import build_optimizer
    from explorer.train.finetune import make_mixup

    size, m, p, f = r.data.image_size, r.model, r.pretrain, r.finetune
    data = r.data.model_dump_json(include={"image_size", "eval_crop_pct", "mean", "std"})
    if r.uses_mae_pretraining:
        mae = _key(arch=m.arch, size=size, patch=m.patch_size, dim=p.decoder_dim,
                   depth=p.decoder_depth, heads=p.decoder_heads, norm_pix=p.norm_pix_loss)
        yield "the MAE", mae + str(p.mask_ratio), lambda: _mae_forward(mae, p.mask_ratio)
        yield ("the pre-training optimizer (pretrain.*)", mae + p.model_dump_json(),
               lambda: build_optimizer(_mae(mae), p, p.base_lr))
        yield ("the pre-training transform", data + p.model_dump_json(),
               lambda: build_transform(r.data, train=True, crop_scale=tuple(p.crop_scale),
                                       hflip=p.hflip, interpolation=p.interpolation))
    clf = _key(family=m.family, arch=m.arch, size=size, patch=m.patch_size, pool=m.global_pool)
    yield f"the {m.arch} classifier at data.image_size {size}", clf, lambda: _classifier(clf)
    decay = f.layer_decay if m.family == "vit" else None
    yield ("the fine-tuning optimizer (finetune.*)", clf + f.model_dump_json(),
           lambda: build_optimizer(_classifier(clf), f, f.base_lr, layer_decay=decay))
    yield ("the fine-tuning transform", data + f.model_dump_json(),
           lambda: build_transform(r.data, train=True, crop_scale=tuple(f.crop_scale),
                                   hflip=f.hflip, rand_augment=f.rand_augment,
                                   random_erasing=f.random_erasing,
                                   interpolation=f.interpolation))
    yield "the evaluation transform", data, lambda: build_transform(r.data, train=False)
    mixup = make_mixup(r, N_CLASSES)
    if mixup is not None and f.batch_size > 1:
        def mix() -> None:
            with torch.device("meta"):
                mixup(torch.empty(f.batch_size, 3, size, size),
                      torch.empty(f.batch_size, N_CLASSES))
        yield f"Mixup (finetune.mix {f.mix})", _key(f=f.model_dump_json(), size=size), mix


def _numbers(obj: Any, path: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(obj, float):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}.{i}")


def _check_values(r: Recipe) -> None:
    for path, value in _numbers(r.model_dump()):
        if not math.isfinite(value):   # inf or nan pass every range check pydantic makes
            raise SpecError(f"{path} is {value}: give a finite number")
    p = r.pretrain
    if p.decoder_depth > MAX_DECODER_DEPTH or p.decoder_dim > MAX_DECODER_DIM:
        raise SpecError(f"pretrain.decoder_depth {p.decoder_depth} / decoder_dim "
                        f"{p.decoder_dim}: at most {MAX_DECODER_DEPTH} / {MAX_DECODER_DIM} "
                        "(MAE's decoder is 8 x 512)")
    for what, value in (("data.image_size", r.data.image_size), ("the eval resize "
                        "data.image_size / data.eval_crop_pct", r.data.eval_size),
                        ("data.cache_size", r.data.train_cache_size)):
        if value > MAX_SIDE:
            raise SpecError(f"{what} is {value} px, above the {MAX_SIDE} px this tool caches "
                            "and trains on")
    for what, seed in (("seed", r.seed), ("data.split_seed", r.data.split_seed)):
        if not 0 <= seed <= MAX_SEED:
            raise SpecError(f"{what} {seed} is outside 0 to {MAX_SEED}")
    _even_batch(r.finetune.batch_size, r.finetune.mix)


def _check_build(label: str, r: Recipe, where: str, built: set[str]) -> None:
    """``built``: keys of what this spec already built without error (its extremes share most
    parts; the models themselves are cached across specs by ``_mae`` and ``_classifier``)."""
    try:
        _check_values(r)
        for what, key, build in _steps(r):
            if what + key in built:
                continue
            try:
                build()
                built.add(what + key)
            except SpecError:
                raise
            except (ValueError, RuntimeError, AssertionError, TypeError, ZeroDivisionError,
                    IndexError) as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise SpecError(f"{what} cannot be built ({type(e).__name__}: {first})") \
                    from None
    except SpecError as e:
        raise SpecError(f"{where}: {label}: {e}") from None


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
        _check_build(label, recipe, where, built)


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
