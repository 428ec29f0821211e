"""What a model started from, and on which data: the words the leaderboard, the verdict and
the study table use for every row.

``describe_start`` returns a JSON-able record kept in the trial's ``encoder.json``:

- ``method``: ``random`` | ``imagenet`` (supervised) | ``mocov2`` | ``mae`` | ``continued_mae`` |
  ``weights_file`` (a CNN from a file) | ``imported`` (a ViT encoder from a file) | a named
  start (``imagenet_mae``);
- ``text``: "MoCo v2 on phantom train 192 images", "ImageNet supervised (timm
  densenet121.tv_in1k)", ...;
- ``data``: the pre-training data in words (the pool or the fine-tuning train split);
- ``sources``, ``images``: the pooled sources and the pool's size (the study table compares
  with the published rows only where these match);
- ``init``: the named start or file it began from, if any.
"""

from __future__ import annotations

from pathlib import Path

from explorer.spec.config import Recipe

METHOD_TEXT = {"random": "random init", "imagenet": "ImageNet supervised", "mocov2": "MoCo v2",
               "mae": "MAE", "continued_mae": "continued MAE", "weights_file": "weights file",
               "imported": "imported encoder"}


def check_starts(recipe: Recipe) -> None:
    """``pretrain.init_from`` of a recipe that pre-trains fits its encoder (one line if not),
    checked before anything is written rather than inside every trial."""
    p = recipe.pretrain
    if recipe.uses_moco_pretraining:
        from explorer.models.cnn import create_cnn

        create_cnn(recipe.model.arch, num_classes=0, weights=p.init_from)
        return
    from explorer.models.mae import create_mae
    from explorer.models.starts import init_mae_encoder

    mae = create_mae(recipe.model.arch, img_size=recipe.data.image_size,
                     patch_size=recipe.model.patch_size, decoder_dim=p.decoder_dim,
                     decoder_depth=p.decoder_depth, decoder_heads=p.decoder_heads)
    init_mae_encoder(mae, recipe.model.arch, p.init_from)


def init_signature(arch: str, name_or_path: str) -> dict:
    """What ``init_from`` contributes to an encoder's key: the name, or the file's name and
    size (cheap, and it changes when the file does)."""
    from explorer.models.starts import is_named, resolve_start

    if is_named(name_or_path):
        path = resolve_start(arch, name_or_path, "pretrain.init_from")
        return {"name": name_or_path, "file": path.name, "bytes": path.stat().st_size}
    path = Path(name_or_path).expanduser()
    return {"file": path.name, "bytes": path.stat().st_size if path.is_file() else None}


def _named(value: str) -> str:
    from explorer.models.starts import START_NAMES, is_named

    return START_NAMES[value] if is_named(value) else Path(value).name


def _source(arch: str, name: str) -> str:
    """``timm densenet121.tv_in1k``, or the weights file a size without published weights
    takes (``file vit_nano.imagenet``)."""
    from explorer.models.starts import TIMM_TAGS, file_stem

    return f"timm {TIMM_TAGS[(arch, name)]}" if (arch, name) in TIMM_TAGS \
        else f"file {file_stem(arch, name)}"


def describe_start(recipe: Recipe, pool: dict | None = None) -> dict:
    """The start of a trial of ``recipe``; ``pool``: ``PretrainData.notes()`` when it
    pre-trains."""
    from explorer.models.starts import is_named

    p, f, arch = recipe.pretrain, recipe.finetune, recipe.model.arch
    record: dict = {"method": "random", "init": None, "data": None, "sources": [],
                    "images": None}
    if recipe.model.family == "vit" and p.from_checkpoint:
        src = p.from_checkpoint
        record.update(method=src if is_named(src) else "imported", init=src)
        what = (f"{_named(src)} ({_source(arch, src)})" if is_named(src)
                else f"imported encoder ({Path(src).name})")
        record["text"] = what
        return record
    if recipe.pretrains and pool is not None:
        method = p.method
        if method == "mae" and p.init_from:
            method = "continued_mae"
        srcs = [s["source"] for s in pool.get("sources", [])] or \
            [recipe.data.source] * (not pool.get("pooled"))
        record.update(method=method, init=p.init_from, data=pool.get("describe"),
                      sources=srcs, images=pool.get("images"))
        text = f"{METHOD_TEXT[method]} on {pool.get('describe')}"
        if p.init_from:
            text += f", from {_named(p.init_from)}"
        record["text"] = text
        return record
    if recipe.model.family == "cnn" and f.weights:
        if is_named(f.weights):
            record.update(method=f.weights, init=f.weights,
                          text=f"{_named(f.weights)} ({_source(arch, f.weights)})")
        else:
            record.update(method="weights_file", init=f.weights,
                          text=f"weights file {Path(f.weights).name}")
        return record
    record["text"] = METHOD_TEXT["random"]
    return record
