"""Golden numbers read off the study's reference code, so our masking, layer decay and position
embedding resampling cannot drift from it.

The references are facebookresearch/mae (``models_mae.py``, ``util/lr_decay.py``,
``util/pos_embed.py``) and lambert-x/medical_mae, which fine-tunes with the same files
(``main_finetune_chestxray.py`` calls ``lrd.param_groups_lrd(model, weight_decay,
no_weight_decay_list=model.no_weight_decay(), layer_decay=...)`` and ``interpolate_pos_embed``).
Every expected value below is derived by hand from those files, never by running our code.
"""

from __future__ import annotations

import pytest
import torch

from explorer.models import create_mae, create_vit_classifier
from explorer.models.mae import visible_patches
from explorer.spec.config import FinetuneConfig
from explorer.train.common import StepPlan, build_optimizer, build_scheduler

# --- masking -------------------------------------------------------------------------------
# models_mae.py, random_masking: ``len_keep = int(L * (1 - mask_ratio))``, a truncation of the
# float product. Worked out for the grids our scales use (L = 64 at smoke and cpu, 196 at paper):
#   196 x (1 - 0.90) = 19.599999999999998 -> 19   (round() gave 20)
#   196 x (1 - 0.75) = 49.0               -> 49
#   196 x (1 - 0.95) = 9.800000000000004  -> 9    (round() gave 10)
#    64 x (1 - 0.90) = 6.3999999999999995 -> 6
#    64 x (1 - 0.85) = 9.600000000000001  -> 9    (round() gave 10)
#    64 x (1 - 0.50) = 32.0               -> 32
#   100 x (1 - 0.90) = 9.999999999999998  -> 9    (float rounding, kept as the reference has it)
#     4 x (1 - 0.80) = 0.7999999999999998 -> 0    (nothing visible: the spec refuses it)
VISIBLE = [(196, 0.90, 19), (196, 0.75, 49), (196, 0.95, 9), (64, 0.90, 6), (64, 0.85, 9),
           (64, 0.50, 32), (100, 0.90, 9), (4, 0.80, 0), (64, 0.0, 64)]


@pytest.mark.parametrize(("num_patches", "ratio", "visible"), VISIBLE)
def test_visible_patches_truncate_like_mae(num_patches, ratio, visible):
    assert visible_patches(num_patches, ratio) == visible


def test_the_encoder_sees_exactly_the_reference_count():
    """At the paper grid (224 px, patch 16: 196 patches) and the study's 0.90, 19 stay."""
    mae = create_mae("vit_nano", img_size=224, patch_size=16, decoder_dim=32, decoder_depth=1,
                     decoder_heads=2)
    imgs = torch.randn(2, 3, 224, 224)
    noise = torch.rand(2, 196, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        latent, mask, _ = mae.forward_encoder(imgs, 0.90, noise)
    assert latent.shape == (2, 1 + 19, 64)
    assert mask.sum(dim=1).tolist() == [196 - 19] * 2
    # the 19 smallest noise values are the visible ones, as in the reference's argsort
    kept = noise.argsort(dim=1)[:, :19]
    assert all(mask[i, kept[i]].sum() == 0 for i in range(2))


def test_no_visible_patch_is_refused_by_the_model():
    mae = create_mae("vit_nano", img_size=8, patch_size=4, decoder_dim=32, decoder_depth=1,
                     decoder_heads=2)
    with pytest.raises(ValueError, match="no visible patch"):
        mae(torch.randn(1, 3, 8, 8), 0.8)   # int(4 x 0.2) = 0


# --- layer-wise lr decay ---------------------------------------------------------------------
# util/lr_decay.py, param_groups_lrd, for a ViT with depth D:
#   num_layers = D + 1; layer_scales[i] = layer_decay ** (num_layers - i), i = 0 .. num_layers
#   layer id: cls_token, pos_embed, patch_embed.* -> 0; blocks.k.* -> k + 1; anything else
#   (norm, fc_norm, head) -> num_layers, i.e. scale 1
#   weight decay: 0 if p.ndim == 1 or the name is in model.no_weight_decay() (pos_embed,
#   cls_token), else weight_decay
# vit_nano has D = 2, so with layer_decay 0.5: layer 0 -> 0.5**3 = 0.125, block 0 -> 0.25,
# block 1 -> 0.5, top -> 1.0. With global pooling the reference deletes ``norm`` and adds
# ``fc_norm`` (top layer); with the class token it keeps ``norm`` (top layer as well).
WD = 0.05
_BLOCK = {"norm1.weight": 0.0, "norm1.bias": 0.0, "attn.qkv.weight": WD, "attn.qkv.bias": 0.0,
          "attn.proj.weight": WD, "attn.proj.bias": 0.0, "norm2.weight": 0.0, "norm2.bias": 0.0,
          "mlp.fc1.weight": WD, "mlp.fc1.bias": 0.0, "mlp.fc2.weight": WD, "mlp.fc2.bias": 0.0}
_COMMON = {
    "cls_token": (0.125, 0.0), "pos_embed": (0.125, 0.0),
    "patch_embed.proj.weight": (0.125, WD), "patch_embed.proj.bias": (0.125, 0.0),
    **{f"blocks.0.{k}": (0.25, wd) for k, wd in _BLOCK.items()},
    **{f"blocks.1.{k}": (0.5, wd) for k, wd in _BLOCK.items()},
    "head.weight": (1.0, WD), "head.bias": (1.0, 0.0),
}
EXPECTED_GROUPS = {
    "avg": {**_COMMON, "fc_norm.weight": (1.0, 0.0), "fc_norm.bias": (1.0, 0.0)},
    "token": {**_COMMON, "norm.weight": (1.0, 0.0), "norm.bias": (1.0, 0.0)},
}


@pytest.mark.parametrize("pool", ["avg", "token"])
def test_layer_decay_groups_equal_param_groups_lrd(pool):
    model = create_vit_classifier("vit_nano", img_size=16, patch_size=4, num_classes=3,
                                  global_pool=pool)
    opt_cfg = FinetuneConfig(weight_decay=WD)
    plan = StepPlan(world_size=1, per_step_batch=8, accum_steps=1, effective_batch=8, lr=0.004,
                    batches_per_epoch=1,
                    updates_per_epoch=1, total_updates=10, warmup_updates=0)
    optimizer = build_optimizer(model, opt_cfg, plan.lr, layer_decay=0.5)
    name_of = {id(p): n for n, p in model.named_parameters()}
    got = {name_of[id(p)]: (g["lr_scale"], g["weight_decay"])
           for g in optimizer.param_groups for p in g["params"]}
    assert got == EXPECTED_GROUPS[pool]

    # util/lr_sched.py sets each group's lr to lr x lr_scale; timm's scheduler does the same
    build_scheduler(optimizer, plan, opt_cfg).step_update(0)
    for g in optimizer.param_groups:
        assert g["lr"] == pytest.approx(0.004 * g["lr_scale"])


# --- position-embedding resampling -----------------------------------------------------------
# util/pos_embed.py, interpolate_pos_embed: the class position is kept; the patch positions are
# reshaped to [1, D, old, old] and resized with F.interpolate(mode="bicubic",
# align_corners=False), no antialiasing. PyTorch's bicubic is Keys' cubic convolution with
# A = -0.75, W(x) = (A+2)|x|^3 - (A+3)|x|^2 + 1 for |x| <= 1, A|x|^3 - 5A|x|^2 + 8A|x| - 4A for
# 1 < |x| < 2, sampling source x = (dst + 0.5) * old / new - 0.5 with taps floor(x)-1 .. +2
# clamped to the border. It is separable, so a position embedding that varies along columns
# only (channel 0) or rows only (channel 1) gives one 1-D result per axis:
#   2 -> 4, values [0, 1]: x = -0.25, 0.25, 0.75, 1.25
#     dst 0: taps [0, 0, 0, 1] at distances 1.75, 0.75, 0.25, 1.25 -> W(1.25) = -0.10546875
#     dst 1: taps [0, 0, 1, 1] at distances 1.25, 0.25, 0.75, 1.75 -> W(0.75) + W(1.75)
#            = 0.26171875 - 0.03515625 = 0.2265625
#     dst 2, 3 by symmetry: 1 - 0.2265625 = 0.7734375, 1 + 0.10546875 = 1.10546875
#   4 -> 2, values [0, 1, 2, 3]: x = 0.5, 2.5, W(0.5) = 0.59375, W(1.5) = -0.09375
#     dst 0: taps [0, 0, 1, 2] -> 0.59375 + 2 x (-0.09375) = 0.40625
#     dst 1: taps [1, 2, 3, 3] -> -0.09375 + 2 x 0.59375 + 3 x 0.59375 - 3 x 0.09375 = 2.59375
# (timm's antialiased default gives other values in both directions: 0.1667 .. 0.8333 going
# up, 0.5 / 2.5 going down.)
RESAMPLED = [((2, 4), [0.0, 1.0], [-0.10546875, 0.2265625, 0.7734375, 1.10546875]),
             ((4, 2), [0.0, 1.0, 2.0, 3.0], [0.40625, 2.59375])]


def _ramp_pos_embed(values: list[float], width: int, cls: float = 7.0) -> torch.Tensor:
    """[1, 1 + n*n, width]: channel 0 = value of the column, channel 1 = value of the row, the
    other channels zero, the class position all ``cls``."""
    n = len(values)
    v = torch.tensor(values)
    grid = torch.zeros(n, n, width)
    grid[..., 0] = v[None, :]
    grid[..., 1] = v[:, None]
    return torch.cat([torch.full((1, width), cls), grid.reshape(n * n, width)])[None]


@pytest.mark.parametrize(("grids", "values", "expected"), RESAMPLED)
def test_pos_embed_resampling_equals_interpolate_pos_embed(grids, values, expected):
    old, new = grids
    source = create_vit_classifier("vit_nano", img_size=4 * old, patch_size=4, num_classes=2)
    pos = _ramp_pos_embed(values, width=source.embed_dim)
    state = source.state_dict() | {"pos_embed": pos}
    model = create_vit_classifier("vit_nano", img_size=4 * new, patch_size=4, num_classes=2,
                                  encoder_state=state)
    got = model.pos_embed.detach()[0]
    assert torch.equal(got[0], pos[0, 0])                       # class position untouched
    grid = got[1:].reshape(new, new, -1)
    want = torch.tensor(expected)
    torch.testing.assert_close(grid[..., 0], want[None, :].expand(new, new), rtol=0, atol=1e-6)
    torch.testing.assert_close(grid[..., 1], want[:, None].expand(new, new), rtol=0, atol=1e-6)
    assert not grid[..., 2:].any()
