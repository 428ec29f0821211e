"""ViT sizes and the fine-tuning classifier (timm's VisionTransformer) with encoder import.

The classifier is exactly what MAE fine-tunes: timm's ``VisionTransformer`` with global average
pooling over patch tokens followed by ``fc_norm``, drop path, and a fresh head initialised with a
tiny std (2e-5 in the study) so that the pre-trained features are not disturbed at step 0. Because
the attribute names are timm's, ``timm.optim.create_optimizer_v2(model, "adamw",
layer_decay=0.55)`` assigns layer-wise lr scales; ``ViTClassifier.group_matcher`` makes them
equal MAE's ``param_groups_lrd`` for both poolings.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor

from explorer.errors import CheckpointError, SpecError
from explorer.models.checkpoints import load_fitting_state, load_weights_file, shape_str
from explorer.names import VIT_SIZES  # arch -> (embed_dim, depth, num_heads): the one registry

#: The registered timm name each size is exported under (``config.json``'s "architecture"). An
#: export's ``model_args`` set every size, so only the family matters; the nearest is named.
TIMM_NAMES: dict[str, str] = {
    "vit_nano": "vit_tiny_patch16_224",
    "vit_micro": "vit_tiny_patch16_224",
    "vit_tiny": "vit_tiny_patch16_224",
    "vit_small": "vit_small_patch16_224",
    "vit_base": "vit_base_patch16_224",
}

# Keys of an MAE checkpoint that belong to the pre-training decoder, never to the encoder.
DECODER_PREFIXES = ("decoder_", "mask_token")


def vit_size(arch: str) -> tuple[int, int, int]:
    """(embed_dim, depth, num_heads) for ``arch``, or a SpecError naming the known ones."""
    if arch not in VIT_SIZES:
        raise SpecError(f"model.arch '{arch}' is not a ViT size; use one of {', '.join(VIT_SIZES)}")
    return VIT_SIZES[arch]


def vit_args(arch: str, *, img_size: int, patch_size: int,
             global_pool: Literal["avg", "token"] = "avg") -> dict:
    """The ``VisionTransformer`` arguments that fix the architecture of ``arch`` (what
    ``create_vit_classifier`` passes, less the training-only ``drop_path_rate``): what an
    export's ``config.json`` records as timm ``model_args``. The export loads the trained
    weights into timm's model built from them with ``strict=True``, so a drift fails loudly."""
    dim, depth, heads = vit_size(arch)
    check_grid(img_size, patch_size)
    return {"img_size": img_size, "patch_size": patch_size, "global_pool": global_pool,
            "embed_dim": dim, "depth": depth, "num_heads": heads, "mlp_ratio": 4.0,
            "qkv_bias": True}


def check_grid(img_size: int, patch_size: int) -> int:
    """Patches per side; a SpecError when the image is not a whole number of patches."""
    if patch_size < 1 or img_size % patch_size:
        raise SpecError(f"image size {img_size} is not a multiple of model.patch_size "
                        f"{patch_size}; choose sizes that tile the image")
    return img_size // patch_size


class ViTClassifier(VisionTransformer):
    """timm's ViT, with the layer grouping of MAE's layer-wise lr decay (``util/lr_decay.py``).

    MAE gives layer 0 to ``cls_token``, ``pos_embed`` and ``patch_embed``, layer i+1 to block i,
    and the top layer (lr scale 1) to everything else: ``norm``, ``fc_norm`` and the head.
    timm's own matcher puts the final ``norm`` with the last block (scale ``layer_decay``),
    which changes the token-pooling recipe (``global_pool: token``); leaving ``norm`` unmatched
    sends it to timm's top group, with the head, as in MAE.
    """

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(stem=r"^cls_token|reg_token|pos_embed|patch_embed|norm_pre",
                    blocks=r"^blocks\.(\d+)")


def create_vit_classifier(
    arch: str,
    *,
    img_size: int,
    patch_size: int,
    num_classes: int,
    drop_path: float = 0.0,
    global_pool: Literal["avg", "token"] = "avg",
    head_init_std: float = 2e-5,
    encoder_state: Mapping[str, Tensor] | str | Path | None = None,
) -> VisionTransformer:
    """A timm ViT classifier, optionally starting from a pre-trained encoder.

    Args:
        arch: a key of ``VIT_SIZES``.
        img_size, patch_size: input side in pixels and patch side; the grid is img/patch.
        num_classes: outputs of the new head (14 findings for ChestX-ray14).
        drop_path: stochastic depth rate, linearly increasing over blocks (timm).
        global_pool: "avg" (mean of patch tokens + fc_norm, as MAE fine-tuning) or "token".
        head_init_std: std of the truncated-normal head init; the head bias starts at 0.
        encoder_state: encoder weights (a dict, e.g. ``MaskedAutoencoderViT.encoder_state_dict()``
            or an MAE/timm state dict, or a path for ``load_weights_file``). Decoder keys, old
            heads and, with avg pooling, the final ``norm`` are dropped; ``pos_embed`` is
            resampled (plain bicubic, as MAE's ``interpolate_pos_embed``) when its grid differs
            from this model's.

    Raises:
        CheckpointError: the weights do not fit (one line naming the first bad tensor).
    """
    dim, depth, heads = vit_size(arch)
    check_grid(img_size, patch_size)
    model = ViTClassifier(
        img_size=img_size, patch_size=patch_size, num_classes=num_classes,
        global_pool=global_pool, embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=4.0,
        qkv_bias=True, drop_path_rate=drop_path,
    )
    if encoder_state is not None:
        source = "encoder weights"
        if isinstance(encoder_state, (str, Path)):
            source = f"weights file {encoder_state}"
            encoder_state = load_weights_file(encoder_state)
        state = _encoder_for(model, encoder_state, source)
        load_fitting_state(model, state, what=f"{arch} classifier (patch {patch_size})",
                           source=source, may_be_missing=_is_new_in_classifier,
                           fix="set model.arch and model.patch_size to the checkpoint's")
    torch.nn.init.trunc_normal_(model.head.weight, std=head_init_std)
    torch.nn.init.zeros_(model.head.bias)
    return model


def _is_new_in_classifier(name: str) -> bool:
    # The head is always new; fc_norm is new when the weights come from MAE pre-training (whose
    # encoder ends with `norm` instead), exactly as in MAE's fine-tuning.
    return name.startswith(("head.", "fc_norm."))


def _encoder_for(model: VisionTransformer, state: Mapping[str, Tensor], source: str
                 ) -> dict[str, Tensor]:
    """The subset of ``state`` the classifier should take, with ``pos_embed`` on its grid."""
    uses_fc_norm = not isinstance(model.fc_norm, torch.nn.Identity)
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if name.startswith(DECODER_PREFIXES) or name.startswith("head."):
            continue
        if uses_fc_norm and name.startswith("norm."):
            continue  # MAE fine-tuning replaces the final norm with fc_norm after pooling
        if not uses_fc_norm and name.startswith("fc_norm."):
            continue
        out[name] = tensor
    if "pos_embed" in out:
        out["pos_embed"] = _resample_pos_embed(out["pos_embed"], model, source)
    return out


def _resample_pos_embed(pos: Tensor, model: VisionTransformer, source: str) -> Tensor:
    want = model.pos_embed.shape
    if pos.shape == want or pos.ndim != 3 or pos.shape[-1] != want[-1]:
        return pos  # identical, or a width mismatch that load_fitting_state reports
    prefix = model.num_prefix_tokens
    side = round((pos.shape[1] - prefix) ** 0.5)
    if side * side != pos.shape[1] - prefix:
        raise CheckpointError(
            f"{source}: tensor 'pos_embed' has shape {shape_str(pos)}, which is not {prefix} "
            f"class position(s) plus a square patch grid; it cannot be resampled to "
            f"{shape_str(want)}")
    grid = list(model.patch_embed.grid_size)
    # MAE's interpolate_pos_embed: F.interpolate(bicubic, align_corners=False) without
    # antialiasing (timm's default antialias=True changes the values whenever the grid changes)
    return resample_abs_pos_embed(pos, new_size=grid, old_size=[side, side],
                                  num_prefix_tokens=prefix, antialias=False,
                                  align_corners=False)
