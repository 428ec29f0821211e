"""The ViT classifier: encoder import, pos_embed resampling, mismatch errors, layer decay."""

import pytest
import torch
from timm.layers import resample_abs_pos_embed
from timm.optim import create_optimizer_v2

from explorer.errors import CheckpointError, SpecError
from explorer.models import VIT_SIZES, create_mae, create_vit_classifier


def _mae(arch="vit_nano", img=64, patch=8):
    torch.manual_seed(0)
    return create_mae(arch, img_size=img, patch_size=patch, decoder_dim=32, decoder_depth=1,
                      decoder_heads=4)


def _classifier(arch="vit_nano", img=64, patch=8, **kw):
    return create_vit_classifier(arch, img_size=img, patch_size=patch, num_classes=14, **kw)


def test_sizes_are_the_registrys_vits():
    from explorer.names import ARCHS

    assert set(VIT_SIZES) == {a.name for a in ARCHS.values() if a.family == "vit"}
    assert VIT_SIZES["vit_small"] == (384, 12, 6) and VIT_SIZES["vit_base"] == (768, 12, 12)
    with pytest.raises(SpecError, match="vit_giant"):
        _classifier("vit_giant")


def test_classifier_is_mae_style_with_a_tiny_new_head():
    torch.manual_seed(0)
    model = _classifier("vit_micro", drop_path=0.2)
    assert model.global_pool == "avg"
    assert isinstance(model.norm, torch.nn.Identity) and model.fc_norm.weight.shape == (128,)
    assert model.head.weight.shape == (14, 128)
    assert model.head.weight.std().item() == pytest.approx(2e-5, rel=0.2)
    assert model.head.bias.abs().sum() == 0
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.2)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 14)


def test_encoder_weights_load_and_decoder_and_norm_are_dropped():
    mae = _mae()
    model = _classifier(encoder_state=mae.state_dict())  # full MAE dict, decoder included
    enc = mae.encoder_state_dict()
    got = model.state_dict()
    for name in ["cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.1.mlp.fc2.bias"]:
        assert torch.equal(got[name], enc[name]), name
    # MAE fine-tuning: the final norm is replaced by a fresh fc_norm after pooling
    assert torch.equal(got["fc_norm.weight"], torch.ones(64))
    assert not any(k.startswith("norm.") for k in got)
    # token pooling keeps the encoder's final norm instead
    token = _classifier(encoder_state=enc, global_pool="token")
    assert torch.equal(token.state_dict()["norm.weight"], enc["norm.weight"])


def test_encoder_weights_from_a_file(tmp_path):
    mae = _mae()
    path = tmp_path / "mae.pth"
    torch.save({"model": mae.state_dict(), "epoch": 1}, path)
    model = _classifier(encoder_state=path)
    assert torch.equal(model.blocks[0].attn.qkv.weight, mae.blocks[0].attn.qkv.weight)


@pytest.mark.parametrize(("src", "dst"), [((112, 8), (64, 8)), ((224, 16), (128, 16))])
def test_pos_embed_is_resampled_like_mae(src, dst):
    mae = _mae(img=src[0], patch=src[1])
    assert mae.pos_embed.shape == (1, 197, 64)  # a 14 x 14 grid, as at 224 px / patch 16
    model = _classifier(img=dst[0], patch=dst[1], encoder_state=mae.encoder_state_dict())
    # MAE's interpolate_pos_embed: plain bicubic (golden values: test_models_reference)
    expected = resample_abs_pos_embed(mae.pos_embed.detach(), new_size=[8, 8],
                                      num_prefix_tokens=1, antialias=False)
    assert model.pos_embed.shape == (1, 65, 64)
    assert torch.equal(model.pos_embed.detach(), expected)
    assert torch.equal(model.pos_embed[0, 0], mae.pos_embed[0, 0])  # class position untouched


def _one_line_error(**kw) -> str:
    with pytest.raises(CheckpointError) as info:
        _classifier(**kw)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_wider_weights_name_the_first_bad_tensor():
    # ViT-B weights into a ViT-S: same depth and patch, different width
    with torch.device("meta"):  # shapes only: nothing is allocated
        vit_b = create_vit_classifier("vit_base", img_size=224, patch_size=16, num_classes=14)
    msg = _one_line_error(arch="vit_small", img=224, patch=16, encoder_state=vit_b.state_dict())
    assert "'cls_token'" in msg and "[1, 1, 768]" in msg and "[1, 1, 384]" in msg
    assert "vit_small" in msg


def test_patch_size_mismatch_is_an_error():
    mae = _mae(img=64, patch=16)
    msg = _one_line_error(img=64, patch=8, encoder_state=mae.encoder_state_dict())
    assert "'patch_embed.proj.weight'" in msg
    assert "[64, 3, 16, 16]" in msg and "[64, 3, 8, 8]" in msg


def test_missing_and_unexpected_tensors_are_errors(tmp_path):
    enc = _mae().encoder_state_dict()
    missing = {k: v for k, v in enc.items() if not k.startswith("blocks.1.")}
    msg = _one_line_error(encoder_state=missing)
    assert "has no tensor 'blocks.1.norm1.weight'" in msg
    deeper = dict(enc) | {"blocks.2.norm1.weight": torch.ones(64)}
    assert "'blocks.2.norm1.weight'" in _one_line_error(encoder_state=deeper)
    path = tmp_path / "partial.pth"
    torch.save(missing, path)
    assert str(path) in _one_line_error(encoder_state=path)


def test_pos_embed_without_a_square_grid_is_an_error():
    enc = _mae().encoder_state_dict()
    enc["pos_embed"] = torch.zeros(1, 51, 64)  # 50 patch positions: not a square
    assert "'pos_embed'" in _one_line_error(img=32, patch=8, encoder_state=enc)


def test_layer_decay_scales_decrease_with_depth():
    model = _classifier("vit_micro")
    opt = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.55)
    scale_of = {}
    for group in opt.param_groups:
        for p in group["params"]:
            scale_of[id(p)] = group["lr_scale"]
    head = scale_of[id(model.head.weight)]
    embed = scale_of[id(model.patch_embed.proj.weight)]
    blocks = [scale_of[id(b.attn.qkv.weight)] for b in model.blocks]
    assert head == pytest.approx(1.0)
    assert embed < blocks[0] < blocks[1] < blocks[2] < blocks[3] < head
    for shallow, deep in zip([embed, *blocks], [*blocks, head]):
        assert shallow / deep == pytest.approx(0.55)
