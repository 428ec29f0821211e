"""The trials' own constructors, run once on a recipe before anything is written.

For one resolved recipe: the MAE with a forward pass and the classifier (ViT or CNN) with a
forward pass, both on PyTorch's meta device (shapes only: no memory, no arithmetic), the
pre-training and fine-tuning optimizers as trials build them, the train and eval transforms,
and Mixup at the real batch size; plus the values no constructor checks (finite numbers, seeds
and sizes in range). ``explorer.search.preflight`` decides which recipes (the space's
extremes, start points, baselines).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from explorer.errors import SpecError

if TYPE_CHECKING:
    from explorer.spec import Recipe

#: Largest side in pixels of a model input and of a cached image; the paper caches 1024.
MAX_SIDE = 4096
#: Seeds go to numpy (below 2**32) and, scaled by 100_003 per epoch, to torch (below 2**63).
MAX_SEED = 2**31 - 1
#: Decoder sizes a build (and a trial) can hold: MAE's largest is 8 x 512.
MAX_DECODER_DEPTH, MAX_DECODER_DIM = 48, 4096
#: A stand-in class count: shapes never depend on it (the data decides it later).
N_CLASSES = 14


def even_batch(batch_size: int, mix: str) -> None:
    if mix != "none" and batch_size > 1 and batch_size % 2:
        raise SpecError(f"finetune.mix '{mix}' needs an even finetune.batch_size (timm's Mixup "
                        f"mixes each image with its mirror in the batch), got {batch_size}")


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
    even_batch(r.finetune.batch_size, r.finetune.mix)


def check_build(label: str, r: Recipe, where: str, built: set[str]) -> None:
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
