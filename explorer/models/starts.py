"""Named starts: ImageNet weights by name (``finetune.weights: imagenet``, ``pretrain.init_from:
imagenet_mae``...), resolved to a local weights file.

A name maps to a timm pretrained tag (``densenet121.tv_in1k``: torchvision's ImageNet weights,
which the study's DenseNet-121 baseline started from; ``deit_small_patch16_224.fb_in1k``: the
study's "ViT-S ImageNet DeiT supervised" row; ``vit_base_patch16_224.mae``: MAE's own ImageNet
encoder). The file is looked up, in order:

1. ``$CXR_EXPLORER_WEIGHTS/<tag>.safetensors`` (or ``.pth`` / ``.bin``; default folder
   ``~/.cache/cxr-explorer/weights``): where offline machines and clusters put the files;
2. the Hugging Face cache that timm downloads into (``try_to_load_from_cache``);
3. a download through timm's own pretrained path (``create_model(tag, pretrained=True)``), only
   where the hub is reachable and ``HF_HUB_OFFLINE`` is not set.

Sizes without published weights (this project's ``vit_nano`` / ``vit_micro``) use the same
folder under ``<arch>.<name>``: tests and small-scale runs put a file there themselves. When
nothing is found the error names the file to provide, in one line. The file is then read with
``load_weights_file`` (``weights_only``, safetensors) and handed to timm's pretrained loader as
a state dict (``pretrained_cfg_overlay=dict(state_dict=...)``), so timm adapts the classifier
and applies its own key filters exactly as for a download.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path

from torch import Tensor, nn

from explorer.errors import CheckpointError

WEIGHTS_ENV = "CXR_EXPLORER_WEIGHTS"
SUFFIXES = (".safetensors", ".pth", ".bin")

#: What each name means, for messages and the report.
START_NAMES = {
    "imagenet": "ImageNet supervised",
    "imagenet_mae": "MAE on ImageNet",
}
#: (arch, name) -> timm pretrained tag. Only tags whose weights have this project's layout.
TIMM_TAGS = {
    ("densenet121", "imagenet"): "densenet121.tv_in1k",
    ("resnet50", "imagenet"): "resnet50.tv_in1k",
    ("vit_tiny", "imagenet"): "deit_tiny_patch16_224.fb_in1k",
    ("vit_small", "imagenet"): "deit_small_patch16_224.fb_in1k",
    ("vit_base", "imagenet"): "deit_base_patch16_224.fb_in1k",
    ("vit_base", "imagenet_mae"): "vit_base_patch16_224.mae",
}


def is_named(value: str | None) -> bool:
    return value in START_NAMES


def weights_dir() -> Path:
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cxr-explorer" / "weights"


def file_stem(arch: str, name: str) -> str:
    """The name the weights file goes by in the weights folder (without suffix)."""
    return TIMM_TAGS.get((arch, name), f"{arch}.{name}")


def _offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:   # fail in milliseconds where there is no network, not after the hub's 25 s of retries
        socket.getaddrinfo("huggingface.co", 443)
    except OSError:
        return True
    return False


def _from_hub(tag: str) -> Path | None:
    """The file timm downloads for ``tag``: from the Hugging Face cache, else downloaded."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    hub_id = timm.models.get_pretrained_cfg(tag).hf_hub_id
    if not hub_id:
        return None

    def cached() -> Path | None:
        for filename in ("model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(hub_id, filename)
            if isinstance(hit, str):
                return Path(hit)
        return None

    if (hit := cached()) is not None or _offline():
        return hit
    quiet = logging.getLogger("huggingface_hub")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:   # timm's own path: it fetches the file into the cache, then we read it from there
        with contextlib.suppress(Exception):
            timm.create_model(tag, pretrained=True)
    finally:
        quiet.setLevel(level)
    return cached()


def resolve_start(arch: str, name: str, key: str) -> Path:
    """The local weights file of the named start ``name`` for ``arch``.

    ``key`` is the recipe field that named it (for the message). Raises ``CheckpointError``
    (one line naming the file to provide) when there is none and it cannot be downloaded.
    """
    if name not in START_NAMES:
        raise CheckpointError(f"{key}: '{name}' is not a named start (known: "
                              f"{', '.join(START_NAMES)}) nor a weights file")
    stem = file_stem(arch, name)
    for suffix in SUFFIXES:
        if (weights_dir() / f"{stem}{suffix}").is_file():
            return weights_dir() / f"{stem}{suffix}"
    tag = TIMM_TAGS.get((arch, name))
    if tag is not None and (hit := _from_hub(tag)) is not None:
        return hit
    where = weights_dir() / f"{stem}.safetensors"
    if tag is None:
        why = f"timm publishes no {START_NAMES[name]} weights for {arch}"
        get = "provide weights of that architecture"
    else:
        import timm

        why = "it is not in the Hugging Face cache and the hub cannot be reached (offline)"
        hub_id = timm.models.get_pretrained_cfg(tag).hf_hub_id
        get = f"download model.safetensors of {hub_id} there"
    raise CheckpointError(f"{key}: {name} ({START_NAMES[name]} {arch}) needs the weights file "
                          f"{where}: {why}; {get} (or set {WEIGHTS_ENV} to the folder holding "
                          f"it)")


def start_state(arch: str, name_or_path: str, key: str) -> tuple[dict[str, Tensor], str]:
    """The state dict of a named start or weights file, and where it came from."""
    from explorer.models.checkpoints import load_weights_file

    path = resolve_start(arch, name_or_path, key) if is_named(name_or_path) \
        else Path(name_or_path).expanduser()
    return load_weights_file(path), str(path)


def init_mae_encoder(mae: nn.Module, arch: str, name_or_path: str,
                     key: str = "pretrain.init_from") -> str:
    """Start an MAE's encoder (and its decoder, when the file holds one that fits) from a
    named start or weights file: continued pre-training. Returns where the weights came from.

    The position embeddings stay MAE's fixed 2-D sin-cos ones (the released MAE checkpoints
    hold exactly those; a supervised ViT's learned ones would be frozen in MAE). Classifier
    tensors (``head``, ``fc_norm``) are dropped; everything else must fit, so a file of another
    width or patch size fails in one line naming its first bad tensor.
    """
    from explorer.models.checkpoints import load_fitting_state
    from explorer.models.vit import DECODER_PREFIXES

    state, path = start_state(arch, name_or_path, key)
    own = mae.state_dict()
    keep = {}
    for k, v in state.items():
        if k.startswith(("head.", "fc_norm.")) or k in ("pos_embed", "decoder_pos_embed"):
            continue
        if k.startswith(DECODER_PREFIXES) and (k not in own or own[k].shape != v.shape):
            continue   # another decoder: this one starts fresh
        keep[k] = v
    load_fitting_state(mae, keep, what=f"{arch} MAE encoder", source=f"{key} {path}",
                       may_be_missing=lambda k: k.startswith(DECODER_PREFIXES)
                       or k in ("pos_embed", "decoder_pos_embed"),
                       fix="set model.arch and model.patch_size to the checkpoint's")
    return path


def weights_of(arch: str, value: str, key: str) -> str:
    """A weights path as given, or the file a named start resolves to."""
    return str(resolve_start(arch, value, key)) if is_named(value) else value
